//! One timer per connection for every wait's time limit.
//!
//! `tokio::time::timeout` registers and drops a timer entry per call, several per request here;
//! a [`Deadline`] keeps one `Sleep` and only re-arms it when it fires early (the wanted deadline
//! moved later, the common case on a busy keep-alive connection) or a shorter limit is wanted.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::time::{sleep_until, Instant, Sleep};

pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    armed: Instant,
    want: Instant,
}

impl Deadline {
    pub fn new() -> Deadline {
        let far = Instant::now() + Duration::from_secs(86_400);
        Deadline {
            sleep: Box::pin(sleep_until(far)),
            armed: far,
            want: far,
        }
    }

    /// Run `fut` until it completes (`Some`) or `limit` passes (`None`).
    pub async fn limit<T>(&mut self, limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
        self.want = Instant::now() + limit;
        if self.want < self.armed {
            self.sleep.as_mut().reset(self.want);
            self.armed = self.want;
        }
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            while self.sleep.as_mut().poll(cx).is_ready() {
                if Instant::now() >= self.want {
                    return Poll::Ready(None);
                }
                self.sleep.as_mut().reset(self.want);
                self.armed = self.want;
            }
            Poll::Pending
        })
        .await
    }
}
