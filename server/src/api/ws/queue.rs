//! The two small channels of a live connection, sized for tens of thousands of idle
//! connections: tokio's `mpsc` allocates a block of 32 slots per channel up front
//! (about 1.3 KiB each for our frame types); these allocate nothing until used and hold
//! only what is in flight.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Something was pushed (or the channel closed).
    filled: Notify,
    /// Something was taken (or the channel closed).
    drained: Notify,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.filled.notify_waiters();
        self.filled.notify_one();
        self.drained.notify_waiters();
        self.drained.notify_one();
    }
}

/// Why `try_send` did not queue.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError {
    Full,
    Closed,
}

/// The sending half; dropping it closes the channel.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half; dropping it closes the channel.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A bounded FIFO of `capacity` items (at least 1).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
        }),
        filled: Notify::new(),
        drained: Notify::new(),
        capacity: capacity.max(1),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `item` if there is room, without waiting.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(TrySendError::Closed);
        }
        if state.items.len() >= self.shared.capacity {
            return Err(TrySendError::Full);
        }
        state.items.push_back(item);
        drop(state);
        self.shared.filled.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting for room. `Err` when the channel closed.
    pub async fn send(&self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        loop {
            let drained = self.shared.drained.notified();
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(item.take().expect("item"));
                }
                if state.items.len() < self.shared.capacity {
                    state.items.push_back(item.take().expect("item"));
                    drop(state);
                    self.shared.filled.notify_one();
                    return Ok(());
                }
            }
            drained.await;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once the channel is closed and empty.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            let filled = self.shared.filled.notified();
            {
                let mut state = self.shared.lock();
                if let Some(item) = state.items.pop_front() {
                    drop(state);
                    self.shared.drained.notify_one();
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            filled.await;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_come_out_in_order_and_the_bound_holds() {
        let (tx, mut rx) = bounded(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(tx.try_send(3), Ok(()));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
    }

    #[tokio::test]
    async fn a_waiting_send_completes_when_room_is_made() {
        let (tx, mut rx) = bounded(1);
        tx.try_send(1).unwrap();
        let sender = tokio::spawn(async move {
            tx.send(2).await.unwrap();
            tx
        });
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        let tx = sender.await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn dropping_either_half_closes_the_other() {
        let (tx, rx) = bounded::<u8>(1);
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.try_send(1), Err(TrySendError::Closed));
        assert_eq!(tx.send(1).await, Err(1));
        let (tx, mut rx) = bounded::<u8>(1);
        tx.try_send(7).unwrap();
        drop(tx);
        // What was queued is still delivered, then the end.
        assert_eq!(rx.recv().await, Some(7));
        assert_eq!(rx.recv().await, None);
    }
}
