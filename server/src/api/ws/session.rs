//! The live session's delivery rules as a pure state machine: no sockets, no database,
//! no clock. The driver (`super::Connection`) feeds it what happened and does what it
//! answers; everything that decides *whether* and *in which order* a client gets a
//! frame lives here and is unit-tested below.
//!
//! The rules:
//! - per visible thread, the last `seq` delivered; a message at or below it is a
//!   duplicate (the replay or a gap fill already sent it), one above `last + 1` leaves a
//!   gap that the driver fills from the database before delivering it;
//! - after `ready`, live messages are held until the client's first frame (or a short
//!   timeout), so a client that sends `resume` at once gets its replay and the live
//!   messages strictly in order; other frames held meanwhile follow the messages,
//!   up to a bound beyond which the client is told to resync;
//! - a `resume` claim is capped at what was ever committed, so a client holding a
//!   number from the future (say, after a server restore) cannot swallow later
//!   messages;
//! - a full outbound queue, a hub that dropped events for us, or a gap that cannot be
//!   filled ends the connection with `resync`: never a silent skip.

use std::collections::{BTreeSet, HashMap};

use axum::extract::ws::Utf8Bytes;

/// What to do with a live `message.created`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageStep {
    /// Send it now (the session already counts it as delivered).
    Deliver,
    /// Already delivered: drop it.
    Duplicate,
    /// Not a thread this user sees (any more): drop it.
    NotVisible,
    /// Held until the client's first frame.
    Held,
    /// Messages `after + 1 ..= before - 1` are missing: fetch them, report each with
    /// [`Session::filled`], then offer this message again.
    Fill { after: i64, before: i64 },
}

/// What to do with any other live frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameStep {
    Deliver,
    Held,
    /// Too much held: the client must resync.
    Overflow,
}

/// Why a connection ends with `resync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resync {
    /// The outbound queue is full: the client does not read fast enough.
    SlowConsumer,
    /// The hub dropped events for this connection.
    Lagged,
    /// A gap could not be filled from the database.
    Gap,
    /// Visibility could not be reloaded.
    Internal,
    /// The node is shutting down.
    Shutdown,
}

impl Resync {
    pub fn reason(self) -> &'static str {
        match self {
            Resync::SlowConsumer => "slow_consumer",
            Resync::Lagged => "lagged",
            Resync::Gap => "gap",
            Resync::Internal => "internal",
            Resync::Shutdown => "server_shutdown",
        }
    }
}

/// Work left after the hold ends.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Release {
    /// Threads with live messages during the hold, and the last `seq` delivered there:
    /// replay everything after it.
    pub replay: Vec<(String, i64)>,
    /// Other frames held meanwhile, in arrival order, to send after the replay.
    pub frames: Vec<Utf8Bytes>,
}

#[derive(Debug)]
struct Hold {
    threads: BTreeSet<String>,
    frames: Vec<Utf8Bytes>,
}

#[derive(Debug)]
pub struct Session {
    /// Last `seq` delivered per visible thread.
    delivered: HashMap<String, i64>,
    /// Each visible thread's last committed `seq` when visibility was loaded: the cap
    /// for resume claims.
    committed: HashMap<String, i64>,
    hold: Option<Hold>,
    max_held_frames: usize,
}

impl Session {
    /// A session that sees `visible` (thread → last committed `seq`), holding live
    /// messages until [`Session::end_hold`].
    pub fn new(visible: &HashMap<String, i64>, max_held_frames: usize) -> Self {
        Session {
            delivered: visible.clone(),
            committed: visible.clone(),
            hold: Some(Hold {
                threads: BTreeSet::new(),
                frames: Vec::new(),
            }),
            max_held_frames,
        }
    }

    pub fn holding(&self) -> bool {
        self.hold.is_some()
    }

    pub fn sees(&self, thread: &str) -> bool {
        self.delivered.contains_key(thread)
    }

    pub fn delivered(&self, thread: &str) -> Option<i64> {
        self.delivered.get(thread).copied()
    }

    /// A live `message.created` for `thread` at `seq`.
    pub fn on_message(&mut self, thread: &str, seq: i64) -> MessageStep {
        let Some(last) = self.delivered.get_mut(thread) else {
            return MessageStep::NotVisible;
        };
        if let Some(hold) = &mut self.hold {
            if seq > *last {
                hold.threads.insert(thread.to_owned());
                return MessageStep::Held;
            }
            return MessageStep::Duplicate;
        }
        if seq <= *last {
            MessageStep::Duplicate
        } else if seq == *last + 1 {
            *last = seq;
            MessageStep::Deliver
        } else {
            MessageStep::Fill {
                after: *last,
                before: seq,
            }
        }
    }

    /// A message fetched from the database (gap fill or replay) for `thread`: `true`
    /// if it is the next one and was counted as delivered, `false` if it must not be
    /// sent (duplicate, or thread not visible).
    pub fn filled(&mut self, thread: &str, seq: i64) -> bool {
        match self.delivered.get_mut(thread) {
            Some(last) if seq > *last => {
                *last = seq;
                true
            }
            _ => false,
        }
    }

    /// Any other live frame.
    pub fn on_frame(&mut self, text: &Utf8Bytes) -> FrameStep {
        match &mut self.hold {
            None => FrameStep::Deliver,
            Some(hold) if hold.frames.len() >= self.max_held_frames => FrameStep::Overflow,
            Some(hold) => {
                hold.frames.push(text.clone());
                FrameStep::Held
            }
        }
    }

    /// Where to replay `thread` from for a client that claims to hold `claimed`:
    /// `None` for a thread it does not see (ignored, indistinguishably from an unknown
    /// one), otherwise the claim clamped to what was ever committed or delivered.
    pub fn resume_from(&self, thread: &str, claimed: i64) -> Option<i64> {
        let delivered = *self.delivered.get(thread)?;
        let cap = self
            .committed
            .get(thread)
            .copied()
            .unwrap_or(0)
            .max(delivered);
        Some(claimed.clamp(0, cap))
    }

    /// The replay of `thread` ended at `cursor`: later live messages continue from it.
    pub fn resumed(&mut self, thread: &str, cursor: i64) {
        if let Some(last) = self.delivered.get_mut(thread) {
            *last = cursor;
        }
    }

    /// Ends the hold (the client's first frame, or the timeout). `None` if not holding.
    pub fn end_hold(&mut self) -> Option<Release> {
        let hold = self.hold.take()?;
        let replay = hold
            .threads
            .into_iter()
            .filter_map(|t| self.delivered.get(&t).map(|&last| (t, last)))
            .collect();
        Some(Release {
            replay,
            frames: hold.frames,
        })
    }

    /// Visibility was reloaded: threads no longer visible stop at once; new ones start
    /// at their current `seq` (their history is the client's to page through REST).
    pub fn reload(&mut self, visible: &HashMap<String, i64>) {
        self.delivered.retain(|t, _| visible.contains_key(t));
        for (t, &last) in visible {
            self.delivered.entry(t.clone()).or_insert(last);
            let c = self.committed.entry(t.clone()).or_insert(last);
            *c = (*c).max(last);
        }
        self.committed.retain(|t, _| visible.contains_key(t));
        if let Some(hold) = &mut self.hold {
            hold.threads.retain(|t| visible.contains_key(t));
        }
    }

    /// Threads whose committed `seq` (from a fresh load) is beyond what was delivered:
    /// after a catch-up these are replayed from the database.
    pub fn behind(&self, visible: &HashMap<String, i64>) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = visible
            .iter()
            .filter_map(|(t, &committed)| {
                let last = *self.delivered.get(t)?;
                (committed > last).then(|| (t.clone(), last))
            })
            .collect();
        out.sort();
        out
    }

    /// Forget everything (visibility could not be reloaded: fail closed).
    pub fn clear(&mut self) {
        self.delivered.clear();
        self.committed.clear();
        if let Some(hold) = &mut self.hold {
            hold.threads.clear();
            hold.frames.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|(t, s)| (t.to_string(), *s)).collect()
    }

    fn live(pairs: &[(&str, i64)]) -> Session {
        let mut s = Session::new(&visible(pairs), 4);
        assert_eq!(s.end_hold(), Some(Release::default()));
        s
    }

    #[test]
    fn the_next_seq_is_delivered_and_counted() {
        let mut s = live(&[("t", 5)]);
        assert_eq!(s.on_message("t", 6), MessageStep::Deliver);
        assert_eq!(s.delivered("t"), Some(6));
        assert_eq!(s.on_message("t", 7), MessageStep::Deliver);
    }

    #[test]
    fn a_duplicate_is_dropped() {
        let mut s = live(&[("t", 5)]);
        assert_eq!(s.on_message("t", 5), MessageStep::Duplicate);
        assert_eq!(s.on_message("t", 3), MessageStep::Duplicate);
        assert_eq!(s.on_message("t", 6), MessageStep::Deliver);
        assert_eq!(s.on_message("t", 6), MessageStep::Duplicate);
    }

    #[test]
    fn a_gap_asks_for_a_fill_then_delivers_in_order() {
        let mut s = live(&[("t", 5)]);
        assert_eq!(
            s.on_message("t", 9),
            MessageStep::Fill {
                after: 5,
                before: 9
            }
        );
        // Nothing was counted yet: the fill decides.
        assert_eq!(s.delivered("t"), Some(5));
        for seq in 6..9 {
            assert!(s.filled("t", seq));
        }
        assert_eq!(s.on_message("t", 9), MessageStep::Deliver);
        assert_eq!(s.delivered("t"), Some(9));
    }

    #[test]
    fn reordered_events_are_delivered_once_in_order() {
        let mut s = live(&[("t", 0)]);
        // 2 arrives before 1: a fill fetches 1, then 2 goes; the late 1 is a duplicate.
        assert_eq!(
            s.on_message("t", 2),
            MessageStep::Fill {
                after: 0,
                before: 2
            }
        );
        assert!(s.filled("t", 1));
        assert_eq!(s.on_message("t", 2), MessageStep::Deliver);
        assert_eq!(s.on_message("t", 1), MessageStep::Duplicate);
        assert!(!s.filled("t", 2), "a fill never sends twice");
    }

    #[test]
    fn messages_of_invisible_threads_are_dropped() {
        let mut s = live(&[("t", 0)]);
        assert_eq!(s.on_message("other", 1), MessageStep::NotVisible);
        assert!(!s.filled("other", 1));
    }

    #[test]
    fn the_hold_keeps_messages_and_releases_them_as_a_replay() {
        let mut s = Session::new(&visible(&[("a", 3), ("b", 0)]), 4);
        assert!(s.holding());
        assert_eq!(s.on_message("a", 4), MessageStep::Held);
        assert_eq!(s.on_message("a", 5), MessageStep::Held);
        assert_eq!(s.on_message("a", 2), MessageStep::Duplicate);
        let edit: Utf8Bytes = "edit".into();
        assert_eq!(s.on_frame(&edit), FrameStep::Held);
        let release = s.end_hold().unwrap();
        assert_eq!(release.replay, vec![("a".to_string(), 3)]);
        assert_eq!(release.frames, vec![edit]);
        assert!(!s.holding());
        assert_eq!(s.end_hold(), None);
    }

    #[test]
    fn a_resume_during_the_hold_moves_the_replay_start() {
        let mut s = Session::new(&visible(&[("a", 10)]), 4);
        assert_eq!(s.on_message("a", 11), MessageStep::Held);
        // The client resumes from 4: the replay sends 5..=11 and ends at 11.
        assert_eq!(s.resume_from("a", 4), Some(4));
        s.resumed("a", 11);
        let release = s.end_hold().unwrap();
        // The release replays after 11: nothing is sent twice.
        assert_eq!(release.replay, vec![("a".to_string(), 11)]);
    }

    #[test]
    fn too_many_held_frames_overflow_into_a_resync() {
        let mut s = Session::new(&visible(&[("a", 0)]), 2);
        let f: Utf8Bytes = "x".into();
        assert_eq!(s.on_frame(&f), FrameStep::Held);
        assert_eq!(s.on_frame(&f), FrameStep::Held);
        assert_eq!(s.on_frame(&f), FrameStep::Overflow);
    }

    #[test]
    fn resume_claims_are_capped_at_what_was_committed() {
        let s = live(&[("a", 10)]);
        assert_eq!(s.resume_from("a", 7), Some(7));
        assert_eq!(s.resume_from("a", 1_000_000), Some(10));
        assert_eq!(s.resume_from("a", -5), Some(0));
        assert_eq!(s.resume_from("hidden", 3), None);
    }

    #[test]
    fn the_resume_cap_follows_live_delivery() {
        let mut s = live(&[("a", 10)]);
        assert_eq!(s.on_message("a", 11), MessageStep::Deliver);
        assert_eq!(s.resume_from("a", 50), Some(11));
    }

    #[test]
    fn reloading_drops_lost_threads_and_starts_new_ones_at_their_seq() {
        let mut s = live(&[("a", 3), ("b", 4)]);
        s.reload(&visible(&[("b", 9), ("c", 7)]));
        assert!(!s.sees("a"));
        assert_eq!(
            s.delivered("b"),
            Some(4),
            "known threads keep their position"
        );
        assert_eq!(s.delivered("c"), Some(7));
        assert_eq!(s.on_message("a", 4), MessageStep::NotVisible);
        assert_eq!(s.on_message("c", 8), MessageStep::Deliver);
    }

    #[test]
    fn behind_lists_threads_with_undelivered_commits() {
        let s = live(&[("a", 3), ("b", 4)]);
        assert_eq!(
            s.behind(&visible(&[("a", 3), ("b", 6), ("c", 2)])),
            vec![("b".to_string(), 4)]
        );
    }

    #[test]
    fn clearing_fails_closed() {
        let mut s = live(&[("a", 3)]);
        s.clear();
        assert_eq!(s.on_message("a", 4), MessageStep::NotVisible);
        assert_eq!(s.resume_from("a", 1), None);
    }
}
