//! The HTTP/1 header-read deadline with one tokio timer per connection.
//!
//! hyper arms a new sleep for every request head it waits for: a boxed tokio
//! `Sleep`, registered in tokio's timer wheel when the connection waits for the
//! head and removed again once the head is in, on every keep-alive request.
//! [`HeadTimer`] gives each connection one tokio sleep instead, never set later
//! than the deadline of the head being read. The sleep hyper asks for per head
//! ([`HeadSleep`]) only holds its deadline and, when the connection has to wait,
//! checks that the connection's sleep will wake it by then.
//!
//! The connection's sleep may fire early, at the deadline of an earlier head;
//! the connection then finds its current head's deadline not reached and sets
//! the sleep to it, so an idle connection wakes at most once per timeout and a
//! head that does not arrive in time still ends the connection at its deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// hyper's timer for one HTTP/1 connection; see the [module docs](self).
#[derive(Clone, Default)]
pub(super) struct HeadTimer {
    armed: Arc<Mutex<Armed>>,
}

/// The connection's one tokio sleep, made when it is first needed.
#[derive(Default)]
struct Armed {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The waker `sleep` was last polled with: while it is current and the
    /// sleep is set early enough, a head's wait needs no poll of the sleep.
    waker: Option<Waker>,
}

/// What hyper waits on for one request head: its deadline.
struct HeadSleep {
    deadline: tokio::time::Instant,
    armed: Arc<Mutex<Armed>>,
}

// === impl HeadTimer ===

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        let now = tokio::time::Instant::now();
        // A duration too long for an `Instant` waits as long as one can.
        let deadline = now.checked_add(duration).unwrap_or_else(|| far_future(now));
        self.until(deadline)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.until(tokio::time::Instant::from_std(deadline))
    }

    fn now(&self) -> Instant {
        // tokio's clock, so that tests with paused time see the same deadlines.
        tokio::time::Instant::now().into_std()
    }
}

impl HeadTimer {
    fn until(&self, deadline: tokio::time::Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadSleep {
            deadline,
            armed: Arc::clone(&self.armed),
        })
    }
}

/// About 30 years from `now`, what tokio itself uses for "never".
fn far_future(now: tokio::time::Instant) -> tokio::time::Instant {
    let far = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(far).unwrap_or(now)
}

// === impl HeadSleep ===

impl Sleep for HeadSleep {}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if tokio::time::Instant::now() >= this.deadline {
            return Poll::Ready(());
        }
        // Only a panic while the lock was held poisons it; ending the
        // connection as if its deadline had passed fails closed.
        let Ok(mut armed) = this.armed.lock() else {
            return Poll::Ready(());
        };
        let Armed { sleep, waker } = &mut *armed;
        let sleep = match sleep {
            Some(sleep) => {
                if sleep.deadline() > this.deadline || sleep.is_elapsed() {
                    sleep.as_mut().reset(this.deadline);
                    *waker = None;
                }
                sleep
            }
            None => {
                *waker = None;
                sleep.insert(Box::pin(tokio::time::sleep_until(this.deadline)))
            }
        };
        // Set no later than this head's deadline and not fired: polled with this
        // task's waker already, it will wake the task in time.
        if waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        if sleep.as_mut().poll(cx).is_ready() {
            if sleep.deadline() >= this.deadline {
                return Poll::Ready(());
            }
            // An earlier head's deadline passed just now: set it to this one's.
            sleep.as_mut().reset(this.deadline);
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        *waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A unit of the tests' clock: long enough for a loaded machine to poll
    /// in between, short enough for a quick test.
    const TICK: Duration = Duration::from_millis(100);

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        (count, waker)
    }

    fn poll(sleep: &mut Pin<Box<dyn Sleep>>, waker: &Waker) -> Poll<()> {
        sleep.as_mut().poll(&mut Context::from_waker(waker))
    }

    #[tokio::test]
    async fn a_head_that_does_not_arrive_ends_at_its_deadline() {
        let timer = HeadTimer::default();
        let (woken, waker) = waker();
        let mut sleep = timer.sleep(TICK * 3);
        assert!(poll(&mut sleep, &waker).is_pending());
        tokio::time::sleep(TICK).await;
        assert!(poll(&mut sleep, &waker).is_pending());
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert!(poll(&mut sleep, &waker).is_ready());
    }

    #[tokio::test]
    async fn a_later_head_is_timed_from_its_own_start() {
        let timer = HeadTimer::default();
        let (woken, waker) = waker();
        // The first head arrived in time: hyper drops its sleep.
        let mut first = timer.sleep(TICK * 4);
        assert!(poll(&mut first, &waker).is_pending());
        drop(first);
        tokio::time::sleep(TICK * 2).await;
        // The second head's wait starts at 2 ticks and ends at 6; the
        // connection's sleep still fires at 4, early.
        let started = tokio::time::Instant::now();
        let mut second = timer.sleep(TICK * 4);
        assert!(poll(&mut second, &waker).is_pending());
        while woken.0.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(TICK / 10).await;
        }
        if started.elapsed() < TICK * 4 {
            assert!(poll(&mut second, &waker).is_pending());
        }
        // It is not over before its own deadline, and woken at it.
        while woken.0.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(TICK / 10).await;
        }
        assert!(started.elapsed() >= TICK * 4);
        assert!(poll(&mut second, &waker).is_ready());
    }

    #[tokio::test]
    async fn the_latest_waker_is_woken() {
        let timer = HeadTimer::default();
        let ((first, one), (second, other)) = (waker(), waker());
        let mut sleep = timer.sleep(TICK);
        assert!(poll(&mut sleep, &one).is_pending());
        assert!(poll(&mut sleep, &other).is_pending());
        tokio::time::sleep(TICK * 2).await;
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert!(poll(&mut sleep, &other).is_ready());
    }
}
