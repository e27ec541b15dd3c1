//! Workload 4: upload and download of large files (streamed through the SDK), with the
//! server's peak memory; baseline: the same bytes through `object_store` unencrypted.

use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::StreamExt;
use tsunagu_client::protocol::messaging::{CreateGroup, GroupKind};

use super::baseline::CopyResult;
use super::report::{Better, Report};
use super::stats::{mib, mib_per_sec};
use super::target::{Target, User};
use super::Sizes;

/// Bytes per generated chunk.
const CHUNK: usize = 256 * 1024;

/// Deterministic, incompressible bytes: chunk `i` is a function of `i` only.
fn fill(index: u64, out: &mut [u8]) {
    // splitmix64
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for word in out.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let bytes = z.to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
}

/// The generated content of a file of `len` bytes, chunk by chunk.
pub struct Generator {
    len: u64,
    done: u64,
    index: u64,
}

impl Generator {
    pub fn new(len: u64) -> Self {
        Generator {
            len,
            done: 0,
            index: 0,
        }
    }

    pub fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done >= self.len {
            return None;
        }
        let n = (self.len - self.done).min(CHUNK as u64) as usize;
        let mut buf = vec![0_u8; CHUNK];
        fill(self.index, &mut buf);
        buf.truncate(n);
        self.index += 1;
        self.done += n as u64;
        Some(Bytes::from(buf))
    }

    /// As a stream for an upload body.
    pub fn stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures_util::stream::unfold(
            self,
            |mut g| async move { g.next_chunk().map(|c| (Ok(c), g)) },
        )
    }
}

/// Checks downloaded bytes against the generated content, whatever the chunking.
pub struct Expected {
    gen: Generator,
    current: Bytes,
    seen: u64,
}

impl Expected {
    pub fn new(len: u64) -> Self {
        Expected {
            gen: Generator::new(len),
            current: Bytes::new(),
            seen: 0,
        }
    }

    pub fn check(&mut self, mut data: &[u8]) -> anyhow::Result<()> {
        while !data.is_empty() {
            if self.current.is_empty() {
                self.current = self
                    .gen
                    .next_chunk()
                    .context("more bytes than were uploaded")?;
            }
            let n = data.len().min(self.current.len());
            if data[..n] != self.current[..n] {
                bail!("downloaded bytes differ near offset {}", self.seen);
            }
            self.current = self.current.slice(n..);
            data = &data[n..];
            self.seen += n as u64;
        }
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        if !self.current.is_empty() || self.gen.next_chunk().is_some() {
            bail!("fewer bytes than were uploaded ({})", self.seen);
        }
        Ok(())
    }
}

fn label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

async fn baseline_copy(target: &Target, bytes: u64) -> anyhow::Result<CopyResult> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .arg("baseline-copy")
        .arg("--dir")
        .arg(target.scratch.join("objects"))
        .arg("--bytes")
        .arg(bytes.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "baseline-copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

pub async fn run(
    target: &Target,
    users: &[User],
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let user = users.first().context("need a user")?;
    let group = user
        .client
        .create_group(&CreateGroup {
            kind: GroupKind::Free,
            name: format!("{} files", target.run_id),
            description: None,
            patient: None,
        })
        .await?;
    let rss = target.rss();
    for &bytes in &sizes.file_bytes {
        let size = label(bytes);
        eprintln!("  tsunagu: upload and download {size}");
        let idle = rss.and_then(|r| r.now());
        let watch = rss.map(|r| r.watch());
        let t = Instant::now();
        let info = user
            .client
            .upload_file(
                group.main_thread_id,
                &format!("bench-{size}.bin"),
                Generator::new(bytes).stream(),
                Some(bytes),
            )
            .await
            .context("uploading")?;
        let up = t.elapsed();
        let up_peak = watch.map(|w| w.finish());
        if info.size != bytes {
            bail!("the server stored {} bytes of {bytes}", info.size);
        }
        let watch = rss.map(|r| r.watch());
        let t = Instant::now();
        let mut download = user
            .client
            .download_file(&info.id, None)
            .await
            .context("downloading")?;
        let mut expected = Expected::new(bytes);
        while let Some(chunk) = download.body.next().await {
            expected.check(&chunk?)?;
        }
        expected.finish()?;
        let down = t.elapsed();
        let down_peak = watch.map(|w| w.finish());
        user.client.delete_file(&info.id).await?;

        eprintln!("  baseline: object_store copy of {size}");
        let base = baseline_copy(target, bytes).await?;
        let base_up = std::time::Duration::from_secs_f64(base.upload_secs);
        let base_down = std::time::Duration::from_secs_f64(base.download_secs);
        report.figure(
            "files",
            &format!("upload {size}"),
            "MiB/s",
            Better::Higher,
            mib_per_sec(bytes, up),
            Some(mib_per_sec(bytes, base_up)),
            None,
        );
        report.figure(
            "files",
            &format!("download {size}"),
            "MiB/s",
            Better::Higher,
            mib_per_sec(bytes, down),
            Some(mib_per_sec(bytes, base_down)),
            None,
        );
        if let (Some(up_peak), Some(down_peak)) = (up_peak, down_peak) {
            let peak = up_peak.max(down_peak);
            report.figure(
                "files",
                &format!("peak server RSS, {size}"),
                "MiB",
                Better::Lower,
                mib(peak),
                Some(mib(base.peak_rss)),
                Some(format!(
                    "upload {:.0}, download {:.0}, idle before {:.0}; baseline: the copying process",
                    mib(up_peak),
                    mib(down_peak),
                    mib(idle.unwrap_or(0))
                )),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_accepts_the_generated_bytes_in_any_chunking() {
        let len = 3 * CHUNK as u64 + 17;
        let mut all = Vec::new();
        let mut g = Generator::new(len);
        while let Some(c) = g.next_chunk() {
            all.extend_from_slice(&c);
        }
        assert_eq!(all.len() as u64, len);
        let mut e = Expected::new(len);
        for piece in all.chunks(10_007) {
            e.check(piece).unwrap();
        }
        e.finish().unwrap();
        let mut bad = Expected::new(len);
        all[5] ^= 1;
        assert!(bad.check(&all).is_err());
        assert!(Expected::new(len).finish().is_err());
    }
}
