//! Whom a listing is for. The queries that list what someone may see — the threads of a
//! group, every visible thread, a library, search hits, a thread's receipts — take one
//! of these instead of bare ids. The domain's capabilities (`Member`, `GroupMember`,
//! `ThreadReader`) implement them, and a capability exists only after its check passed,
//! so a handler cannot ask for a list with ids taken from a request. What each query
//! then admits is the `thread_audience` view, the one definition of the rule.

/// Someone signed in: their region bounds everything listed for them.
pub trait Viewer {
    fn viewer_region(&self) -> String;
    fn viewer_id(&self) -> String;
}

/// A member of one group (the check of `groups::membership` passed).
pub trait GroupViewer: Viewer {
    fn viewed_group(&self) -> &str;
}

/// A reader of one thread (the check of `threads::access` passed).
pub trait ThreadViewer: Viewer {
    fn viewed_thread(&self) -> &str;
}
