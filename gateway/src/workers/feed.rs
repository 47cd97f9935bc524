//! The live feed of committed events, for subscribers.
//!
//! The outbox is the truth; this follows it by sequence number and routes each event to the
//! subscribers it is about: those watching its popug, and those watching everyone. With
//! 10,000 popugs on their boards, an assignment wakes one subscriber and the watchers, not
//! all 10,000. Each subscriber has a bounded queue; one that falls that far behind is dropped
//! and told to resume from where it got to.
//!
//! It wakes when told (a local commit, or PostgreSQL's NOTIFY from another replica) and on a
//! timer, so a wake-up lost while a listener reconnects delays an event by at most the poll
//! interval and never loses it. Following the outbox's positions sees every event once, in an
//! order that never changes behind the feed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ates_db::{Backend, Channel, Db, Listener, SqlError};
use ates_events::Contract as _;
use ates_events::outbox::{self, Position, StoredEvent};
use ates_events::task::{TaskAssigned, TaskCompleted};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::poller::{Poller, Round};

/// How often the feed looks at the outbox when nobody wakes it.
const POLL: Duration = Duration::from_secs(1);
/// Events read per round trip.
const BATCH: i64 = 500;

pub struct Feed {
    db: Db,
    /// Subscribers by the popug they watch (`None`: everyone), and the position of the last
    /// event routed: one lock, so a new subscriber misses nothing and gets nothing twice.
    routes: Mutex<Routes>,
    /// Events a subscriber may fall behind before it is dropped.
    capacity: usize,
    poller: Poller,
    /// Poked after this replica committed events: tells the other replicas (PostgreSQL).
    announce: Arc<Poller>,
}

impl Feed {
    /// Starts following the outbox from its current end. `capacity` bounds how far a
    /// subscriber may fall behind before it is told to resume.
    pub async fn start(db: Db, capacity: usize) -> Result<Arc<Self>, SqlError> {
        let end = {
            let mut conn = db.pool().acquire().await?;
            outbox::end(&mut conn).await?
        };
        let feed = Arc::new(Self {
            db,
            routes: Mutex::new(Routes {
                position: end,
                watchers: HashMap::new(),
            }),
            capacity: capacity.max(1),
            poller: Poller::new("reading the outbox for subscribers", POLL),
            announce: Arc::new(Poller::on_wake("telling the other replicas of a commit")),
        });
        let running = Arc::clone(&feed);
        tokio::spawn(async move { running.poller.run(|| running.fan_out()).await });
        if feed.db.backend() == Backend::Postgres {
            let (db, announce) = (feed.db.clone(), Arc::clone(&feed.announce));
            tokio::spawn(async move {
                // One `NOTIFY` at a time, however many commits poked it meanwhile. A
                // transaction of its own that writes nothing else commits without a flush, so
                // the writers never wait for it. Should it fail, the others still poll.
                announce
                    .run(|| async {
                        db.notify(db.pool(), Channel::Appended, "").await?;
                        Ok::<_, SqlError>(Round::Idle)
                    })
                    .await
            });
        }
        Ok(feed)
    }

    /// The assignments and completions about `popug` (everyone's when `None`) after the
    /// returned position.
    pub fn subscribe(&self, popug: Option<&str>) -> (Subscriber, Position) {
        let (sender, events) = mpsc::channel(self.capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut routes = self.routes.lock().expect("feed routes");
        let position = routes.position;
        let same = routes.watchers.entry(popug.map(str::to_owned)).or_default();
        // Subscribers that went away are dropped here too, not only when an event finds them.
        same.retain(|route| !route.sender.is_closed());
        same.push(Route {
            sender,
            lagged: Arc::clone(&lagged),
        });
        (Subscriber { events, lagged }, position)
    }

    /// Another replica committed events: look at the outbox now.
    pub fn wake(&self) {
        self.poller.wake();
    }

    /// This replica committed events: look at the outbox now, and tell the other replicas.
    pub fn committed(&self) {
        self.poller.wake();
        self.announce.wake();
    }

    /// The position of the event `seq`, for a subscriber resuming after it.
    pub async fn position_of(&self, seq: i64) -> Result<Position, SqlError> {
        let mut conn = self.db.pool().acquire().await?;
        outbox::position_of(&mut conn, seq).await
    }

    /// Committed events after `after`, from storage, a batch at a time: for a subscriber
    /// catching up before it goes live.
    pub async fn replay(&self, after: Position) -> Result<Vec<StoredEvent>, SqlError> {
        let mut conn = self.db.pool().acquire().await?;
        outbox::read_after(&mut conn, after, BATCH).await
    }

    /// Sends the next batch to the subscribers it is about.
    async fn fan_out(&self) -> Result<Round, SqlError> {
        let after = self.routes.lock().expect("feed routes").position;
        let mut conn = self.db.pool().acquire().await?;
        let batch = outbox::read_after(&mut conn, after, BATCH).await?;
        drop(conn);
        let full = batch.len() as i64 == BATCH;
        let mut routes = self.routes.lock().expect("feed routes");
        for event in batch {
            let position = event.position();
            // Subscribers hear of assignments and completions; a day close's thousands of
            // payouts are nobody's board.
            let popugs: Vec<String> = about(&event).map(str::to_owned).collect();
            if !popugs.is_empty() {
                let event = Arc::new(event);
                for popug in popugs {
                    routes.send(Some(popug), &event);
                }
                routes.send(None, &event);
            }
            routes.position = position;
        }
        Ok(if full { Round::More } else { Round::Idle })
    }
}

/// The popugs a live event is about: the assignee of an assignment and, when it took the task
/// from someone else, that popug too, whose board loses it; the completer of a completion.
/// Other events go to no subscriber.
pub(crate) fn about(event: &StoredEvent) -> impl Iterator<Item = &str> {
    let fields: &[&str] = match event.event_type.as_str() {
        TaskAssigned::TYPE => &["assigneeId", "previousAssigneeId"],
        TaskCompleted::TYPE => &["completerId"],
        _ => &[],
    };
    let popug = |field: &&str| event.payload.get(*field).and_then(|v| v.as_str());
    let first = fields.first().and_then(popug);
    // A draw onto the same popug is about them once.
    let second = fields.get(1).and_then(popug).filter(|p| Some(*p) != first);
    first.into_iter().chain(second)
}

struct Routes {
    /// The last event routed.
    position: Position,
    watchers: HashMap<Option<String>, Vec<Route>>,
}

impl Routes {
    /// Queues `event` for everyone watching `key`; drops those gone, and those too far behind.
    fn send(&mut self, key: Option<String>, event: &Arc<StoredEvent>) {
        let Some(routes) = self.watchers.get_mut(&key) else {
            return;
        };
        routes.retain(|route| match route.sender.try_send(Arc::clone(event)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                route.lagged.store(true, Ordering::Release);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        });
        if routes.is_empty() {
            self.watchers.remove(&key);
        }
    }
}

struct Route {
    sender: mpsc::Sender<Arc<StoredEvent>>,
    lagged: Arc<AtomicBool>,
}

/// One subscriber's events, in order.
pub struct Subscriber {
    events: mpsc::Receiver<Arc<StoredEvent>>,
    lagged: Arc<AtomicBool>,
}

/// Why a subscriber's events ended.
pub enum Ended {
    /// It fell further behind than the feed keeps: it must resume from storage.
    Lagged,
    /// The feed stopped.
    Closed,
}

impl Subscriber {
    /// The next event, or why there is none.
    pub async fn recv(&mut self) -> Result<Arc<StoredEvent>, Ended> {
        match self.events.recv().await {
            Some(event) => Ok(event),
            None if self.lagged.load(Ordering::Acquire) => Err(Ended::Lagged),
            None => Err(Ended::Closed),
        }
    }
}

/// What another replica's commits tell this one, through PostgreSQL `NOTIFY`.
pub struct CommitListeners {
    /// Events were appended: wake the feed and the accounting consumer.
    pub appended: Box<dyn Fn() + Send + Sync>,
    /// A popug changed: forget what is kept of it in memory.
    pub popug_changed: Box<dyn Fn(&str) + Send + Sync>,
    /// A popug's sessions must end.
    pub popug_revoked: Box<dyn Fn(&str) + Send + Sync>,
    /// The listener (re)connected: whatever was notified meanwhile is lost.
    pub connected: Box<dyn Fn() + Send + Sync>,
}

/// Listens for other replicas' commits and passes them on. Reconnects by itself; the pollers
/// (and forgetting every popug kept in memory) cover the gap.
pub async fn listen_for_commits(url: String, listeners: CommitListeners) {
    let poller = Poller::new("listening for other replicas' commits", POLL);
    poller.run(|| listen(&url, &listeners)).await
}

/// Passes notifications on until the connection is lost.
async fn listen(url: &str, listeners: &CommitListeners) -> Result<Round, SqlError> {
    let mut listener = Listener::connect(url).await?;
    (listeners.connected)();
    loop {
        match listener.recv().await? {
            (Channel::Appended, _) => (listeners.appended)(),
            (Channel::PopugChanged, id) => (listeners.popug_changed)(&id),
            (Channel::PopugRevoked, id) => (listeners.popug_revoked)(&id),
        }
    }
}
