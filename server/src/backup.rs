//! `tsunagu-server backup --to DIR` and `restore --from DIR`: a complete, checksummed
//! copy of a single-machine installation (SQLite and local blob storage) — the keys, a
//! consistent online snapshot of the database and the blobs — and its restoration into
//! an empty data directory. PostgreSQL and S3 have their own tools; `docs/operations.md`
//! gives the procedure.
//!
//! Order, as in the manual procedure: keys first (every KEK the snapshot refers to is
//! then in the backup), then the database (`VACUUM INTO`: one transaction's snapshot,
//! taken while the server serves), then the blobs (a blob is written before its record
//! commits and never changes, so blobs copied after the snapshot include every file the
//! snapshot knows). The manifest (`manifest.json`, SHA-256 and size of every file) is
//! written last: a backup without one is incomplete. A restore checks every file
//! against it before it writes anything.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::store::Store;

/// `manifest.json`'s `format`.
pub const FORMAT: &str = "tsunagu-backup-v1";

const DATABASE: &str = "database/tsunagu.db";

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// RFC 3339.
    pub created_at: String,
    /// Every file of the backup but the manifest: relative path (`/`), size, SHA-256.
    pub files: Vec<ManifestEntry>,
    /// KEKs given in `TSUNAGU_FILES_KEKS` are not files: they are not in the backup.
    #[serde(default)]
    pub env_keks_not_included: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// What the backup holds and where each part lives in this configuration: the backup's
/// relative prefix (a file, or a directory when it ends in `/`) and the local path.
fn layout(config: &Config) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let blob_dir = match config.blob_backend()? {
        crate::blob::Backend::Local { dir } => dir,
        _ => bail!(
            "backup covers local blob storage only; for S3 follow docs/operations.md (Backup and restore)"
        ),
    };
    Ok(vec![
        ("keys/kek/".into(), config.kek_dir()),
        ("keys/jwt.pem".into(), config.jwt_key_file()),
        ("keys/jwt/".into(), config.jwt_key_dir()),
        ("keys/audit.pem".into(), config.audit_signing_key_file()),
        ("keys/audit-verify/".into(), config.audit_verify_keys_dir()),
        ("blobs/".into(), blob_dir),
    ])
}

/// The SQLite database file of `config`, or an error for PostgreSQL.
pub fn sqlite_file(config: &Config) -> anyhow::Result<PathBuf> {
    let url = config.database_url();
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        bail!(
            "backup covers SQLite only; for PostgreSQL use pg_dump as docs/operations.md (Backup and restore) says"
        );
    };
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        bail!("the database is not a file");
    }
    Ok(PathBuf::from(path))
}

/// An upload still being written (`<id>#<n>`): not part of any file yet.
fn is_staging(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        private_dirs(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn private_dirs(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Copies `from` to the new file `to` (mode 0600), returning size and SHA-256 of what
/// was written.
fn copy_hashed(from: &Path, to: &Path) -> anyhow::Result<(u64, String)> {
    use std::io::{Read, Write};
    let mut src =
        std::fs::File::open(from).with_context(|| format!("reading {}", from.display()))?;
    let mut dst = private_file(to).with_context(|| format!("creating {}", to.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        size += n as u64;
    }
    dst.sync_all()?;
    Ok((size, hex::encode(hasher.finalize())))
}

fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Files under `dir`, recursively, as paths relative to it (`/`-separated), sorted.
fn files_under(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if entry.file_type()?.is_file() {
                let rel = path.strip_prefix(dir)?;
                let rel: Vec<_> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(rel.join("/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn empty_or_missing(dir: &Path) -> anyhow::Result<bool> {
    Ok(!dir.exists() || std::fs::read_dir(dir)?.next().is_none())
}

/// Writes a backup of the installation `config` describes into `to` (which must not
/// exist, or be empty). The server may be running. Returns the manifest.
pub async fn backup(config: &Config, to: &Path) -> anyhow::Result<Manifest> {
    if !empty_or_missing(to)? {
        bail!(
            "{} is not empty: a backup goes into a new directory",
            to.display()
        );
    }
    let db_file = sqlite_file(config)?;
    if !db_file.exists() {
        bail!("no database at {}", db_file.display());
    }
    let layout = layout(config)?;
    private_dirs(to).with_context(|| format!("creating {}", to.display()))?;
    let mut files = Vec::new();
    let mut add = |rel: String, (size, sha256): (u64, String)| {
        files.push(ManifestEntry {
            path: rel,
            size,
            sha256,
        })
    };
    // 1. Keys (and, last in the layout, the blobs — after the database; see below).
    for (prefix, local) in layout.iter().filter(|(p, _)| p.starts_with("keys/")) {
        if let Some(dir_prefix) = prefix.strip_suffix('/') {
            for rel in files_under(local)? {
                let name = format!("{dir_prefix}/{rel}");
                add(
                    name.clone(),
                    copy_hashed(&local.join(&rel), &to.join(&name))?,
                );
            }
        } else if local.exists() {
            add(prefix.clone(), copy_hashed(local, &to.join(prefix))?);
        }
    }
    // 2. The database: one consistent snapshot, taken online.
    let snapshot = to.join(DATABASE);
    private_dirs(snapshot.parent().expect("has a parent"))?;
    {
        let store = Store::connect(&config.database_url(), 1)
            .await
            .context("connecting to the database")?;
        let mut conn = store.conn().await?;
        sqlx::query("VACUUM INTO $1")
            .bind(snapshot.to_string_lossy().into_owned())
            .execute(&mut *conn)
            .await
            .context("VACUUM INTO (the database snapshot)")?;
        drop(conn);
        store.close().await;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&snapshot, std::fs::Permissions::from_mode(0o600))?;
    }
    add(DATABASE.into(), hash_file(&snapshot)?);
    // 3. The blobs, after the snapshot; uploads in progress are not files yet.
    let (_, blob_dir) = layout
        .iter()
        .find(|(p, _)| p == "blobs/")
        .expect("in the layout");
    for rel in files_under(blob_dir)? {
        if is_staging(rel.rsplit('/').next().unwrap_or(&rel)) {
            continue;
        }
        let name = format!("blobs/{rel}");
        let source = blob_dir.join(&rel);
        // A file deleted since the snapshot may be gone by now: its key is shredded in
        // the snapshot's future, so it is not needed either.
        if !source.exists() {
            continue;
        }
        add(name.clone(), copy_hashed(&source, &to.join(&name))?);
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        files,
        env_keks_not_included: config.files.env_keks.is_some(),
    };
    // 4. The manifest, last.
    let path = to.join("manifest.json");
    {
        use std::io::Write;
        let mut f = private_file(&path)?;
        f.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
        f.sync_all()?;
    }
    Ok(manifest)
}

/// Reads `manifest.json` of the backup in `from` and checks every file it lists (size
/// and SHA-256). Returns the manifest, or the first problem.
pub fn verify(from: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read(from.join("manifest.json")).with_context(|| {
        format!(
            "no manifest.json in {} (an incomplete backup?)",
            from.display()
        )
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&text).context("manifest.json is not a manifest")?;
    if manifest.format != FORMAT {
        bail!("manifest format {:?}, expected {FORMAT:?}", manifest.format);
    }
    if !manifest.files.iter().any(|f| f.path == DATABASE) {
        bail!("the manifest lists no database");
    }
    for entry in &manifest.files {
        let safe = !entry.path.is_empty()
            && !entry.path.starts_with('/')
            && entry
                .path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !safe {
            bail!("the manifest names an unsafe path {:?}", entry.path);
        }
        let path = from.join(&entry.path);
        let (size, sha256) =
            hash_file(&path).with_context(|| format!("{} is missing", entry.path))?;
        if size != entry.size || sha256 != entry.sha256 {
            bail!(
                "{} does not match the manifest (damaged or altered)",
                entry.path
            );
        }
    }
    Ok(manifest)
}

/// Restores the backup in `from` into the installation `config` describes, whose data
/// dir (and every key and blob location) must be empty or missing. Checks the manifest
/// first; writes nothing if any file fails it.
pub fn restore(config: &Config, from: &Path) -> anyhow::Result<Manifest> {
    let manifest = verify(from)?;
    let db_file = sqlite_file(config)?;
    let layout = layout(config)?;
    if !empty_or_missing(&config.data_dir)? {
        bail!(
            "the data dir {} is not empty: restore only into an empty one",
            config.data_dir.display()
        );
    }
    let mut targets = vec![db_file.clone()];
    targets.extend(layout.iter().map(|(_, p)| p.clone()));
    for target in &targets {
        if target.is_file() || (target.is_dir() && !empty_or_missing(target)?) {
            bail!(
                "{} already exists: restore only into an empty installation",
                target.display()
            );
        }
    }
    private_dirs(&config.data_dir)?;
    for entry in &manifest.files {
        let target = if entry.path == DATABASE {
            db_file.clone()
        } else {
            let Some((prefix, local)) = layout.iter().find(|(p, _)| {
                if p.ends_with('/') {
                    entry.path.starts_with(p.as_str())
                } else {
                    entry.path == *p
                }
            }) else {
                bail!(
                    "the manifest names {:?}, which this version does not restore",
                    entry.path
                );
            };
            if prefix.ends_with('/') {
                local.join(&entry.path[prefix.len()..])
            } else {
                local.clone()
            }
        };
        let (size, sha256) = copy_hashed(&from.join(&entry.path), &target)?;
        if size != entry.size || sha256 != entry.sha256 {
            bail!("{} changed while being restored", entry.path);
        }
    }
    Ok(manifest)
}
