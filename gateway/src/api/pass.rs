//! One load per loader for each pass of the executor. A request's fields register their keys
//! while the executor polls them, and a loader spawns its fetch at the first key. With no
//! delay, that fetch could start while the executor was still registering keys: a page of 50
//! tasks read its histories in 25 queries of two. A pass is more than one poll: async-graphql
//! resolves an object's fields in a `FuturesUnordered`, which wakes its task and returns after
//! polling each new set of fields once, so the 50 tasks of a page are reached two at a time,
//! in polls that follow each other at once. A pass ends with a poll that did not wake its own
//! task: everything it could register is registered, and what it waits for is the loads. A
//! fetch spawned during a pass waits for its end; one spawned between passes starts at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use async_graphql::Response;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use futures::Stream;
use futures::future::BoxFuture;
use futures::task::AtomicWaker;
use tokio::sync::Notify;

use super::Loaders;

/// Whether a request's executor is in a pass, and a signal when one ends.
#[derive(Default)]
pub struct Pass {
    polling: AtomicBool,
    ended: Notify,
}

impl Pass {
    /// Runs `fetch` on the runtime once the pass in progress, if any, has ended.
    pub fn spawn(self: &Arc<Self>, fetch: BoxFuture<'static, ()>) {
        let pass = Arc::clone(self);
        tokio::spawn(async move {
            pass.ended().await;
            fetch.await;
        });
    }

    async fn ended(&self) {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        // Registered before the flag is read: an end between the two is not missed.
        ended.as_mut().enable();
        if self.polling.load(Ordering::Acquire) {
            ended.await;
        }
    }

    fn end(&self) {
        if self.polling.swap(false, Ordering::AcqRel) {
            self.ended.notify_waiters();
        }
    }
}

/// The waker a driven future is polled with: it tells whether the future woke itself while it
/// was polled, and passes every wake on to the task.
#[derive(Default)]
struct Woken {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// A future or a stream polled in passes of `pass`.
pub struct Driven<F> {
    inner: Pin<Box<F>>,
    pass: Arc<Pass>,
    woken: Arc<Woken>,
    waker: Waker,
}

impl<F> Driven<F> {
    pub fn new(pass: &Arc<Pass>, inner: F) -> Self {
        let woken = Arc::new(Woken::default());
        Self {
            inner: Box::pin(inner),
            pass: Arc::clone(pass),
            waker: Waker::from(Arc::clone(&woken)),
            woken,
        }
    }

    /// Polls with `poll` as part of a pass; the pass ends when the poll is done without having
    /// woken the task (or when it panics).
    fn drive<T>(
        &mut self,
        cx: &Context<'_>,
        poll: impl FnOnce(Pin<&mut F>, &mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        struct Unfinished<'a>(Option<&'a Pass>);
        impl Drop for Unfinished<'_> {
            fn drop(&mut self) {
                if let Some(pass) = self.0 {
                    pass.end();
                }
            }
        }
        self.woken.task.register(cx.waker());
        self.woken.woken.store(false, Ordering::Release);
        self.pass.polling.store(true, Ordering::Release);
        let mut unfinished = Unfinished(Some(&self.pass));
        let polled = poll(self.inner.as_mut(), &mut Context::from_waker(&self.waker));
        if polled.is_pending() && self.woken.woken.load(Ordering::Acquire) {
            // Polled again at once: the pass goes on.
            unfinished.0 = None;
        }
        polled
    }
}

impl<F> Drop for Driven<F> {
    /// A request dropped between two polls of a pass (stopped at its deadline) holds no fetch.
    fn drop(&mut self) {
        self.pass.end();
    }
}

impl<F: Future> Future for Driven<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.drive(cx, |inner, cx| inner.poll(cx))
    }
}

impl<S: Stream> Stream for Driven<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.drive(cx, |inner, cx| inner.poll_next(cx))
    }
}

/// The async-graphql extension that drives each query and mutation as passes of its loaders'
/// [`Pass`]. A subscription's events are driven by the socket that runs its stream
/// (`http::ws`): async-graphql gives the subscribe hook no request data.
pub struct Passes;

impl ExtensionFactory for Passes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Passes)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Passes {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        match ctx.data_opt::<Loaders>() {
            Some(loaders) => Driven::new(loaders.pass(), next.run(ctx, operation_name)).await,
            None => next.run(ctx, operation_name).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_graphql::dataloader::{DataLoader, Loader};
    use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;

    /// Records the size of every batch it is asked for.
    #[derive(Default, Clone)]
    struct Batches(Arc<Mutex<Vec<usize>>>);

    impl Loader<u32> for Batches {
        type Value = u32;
        type Error = String;

        async fn load(&self, keys: &[u32]) -> Result<HashMap<u32, u32>, String> {
            self.0.lock().unwrap().push(keys.len());
            Ok(keys.iter().map(|k| (*k, k * 2)).collect())
        }
    }

    struct Item(u32);

    #[Object]
    impl Item {
        async fn id(&self) -> u32 {
            self.0
        }
        async fn doubled(&self, ctx: &Context<'_>) -> Option<u32> {
            let loader = ctx.data_unchecked::<DataLoader<Batches>>();
            loader.load_one(self.0).await.ok().flatten()
        }
    }

    struct Query;

    #[Object]
    impl Query {
        async fn items(&self) -> Vec<Item> {
            (0..50).map(Item).collect()
        }
    }

    /// The batches a page of 50 items loads in, driven in passes or not. Undriven, the
    /// executor reaches the items two at a time, and a fetch started by an idle worker takes
    /// what is registered so far (usually two keys: how many depends on the scheduler).
    async fn batches(driven: bool) -> Vec<usize> {
        let batches = Batches::default();
        let pass = Arc::new(Pass::default());
        let spawner = Arc::clone(&pass);
        let loader = DataLoader::new(batches.clone(), move |fetch| spawner.spawn(fetch))
            .delay(std::time::Duration::ZERO);
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
        let request = async_graphql::Request::new("{ items { id doubled } }").data(loader);
        let response = if driven {
            Driven::new(&pass, schema.execute(request)).await
        } else {
            schema.execute(request).await
        };
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        let items = response.data.into_json().unwrap()["items"].clone();
        assert_eq!(items[49]["doubled"], 98);
        batches.0.lock().unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_loads_its_keys_in_one_batch() {
        for _ in 0..20 {
            assert_eq!(batches(true).await, vec![50]);
        }
        // The answer is the same either way.
        assert_eq!(batches(false).await.iter().sum::<usize>(), 50);
    }
}
