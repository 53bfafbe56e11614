//! The client-streamed `Ingest` call: the async side reads items and leases each its share of
//! two byte budgets (the stream's and the server's); the blocking side admits them in
//! batches ([`StreamIngest`]) and lets the budgets go at each commit.

use std::sync::Arc;

use prost::Message;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::calls::{kib, Admission};
use super::convert::{self, invalid};
use super::pb;
use super::DcdApi;
use crate::service::StreamIngest;

/// What a stream's feed hands its worker: an item with its share of the byte budgets, or
/// a request to commit now (the feed is short of budget: committing frees it).
enum Feed {
    Item(pb::IngestItem, [OwnedSemaphorePermit; 2]),
    Commit,
}

impl DcdApi {
    /// The `Ingest` call.
    pub(super) async fn ingest_stream(
        &self,
        request: Request<Streaming<pb::IngestItem>>,
    ) -> std::result::Result<Response<pb::IngestSummary>, Status> {
        let limits = self.streams;
        // Streams wait on their clients: capped apart from the in-flight limit, so that idle
        // streams can never take every slot.
        let _stream = self.open_streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the server has {} Ingest streams open, its limit; retry with backoff, or start it with a higher --max-ingest-streams",
                limits.max_streams
            ))
        })?;
        let mut stream = request.into_inner();
        let idle = |what: &str| {
            Status::deadline_exceeded(format!(
                "no {what} for {} s (--stream-idle-timeout-s); the stream is closed, items committed before stay stored",
                limits.idle_timeout.as_secs()
            ))
        };
        let first = match tokio::time::timeout(limits.idle_timeout, stream.next()).await {
            Err(_) => return Err(idle("first item")),
            Ok(Some(item)) => item.map_err(super::decode_errors::reclassify_status)?,
            Ok(None) => {
                return Err(invalid(
                    "items",
                    "the stream is empty: send at least one item",
                ))
            }
        };
        if first.pool.is_empty() {
            return Err(invalid(
                "pool",
                "set the pool on the first item of the stream",
            ));
        }
        // The blocking side commits batches while this side keeps reading the stream. Each
        // item carries its share of two byte budgets (the stream's, the server's) until its
        // batch is committed; a feed short of budget asks for a commit, which frees it.
        let (tx, mut rx) = mpsc::channel::<Feed>(1024);
        let pool = first.pool.clone();
        let itemize = first.itemize;
        let worker = self.run_blocking("Ingest", pool.clone(), Admission::Stream, move |s| {
            let mut ingest = StreamIngest::start(s.clone(), &pool)?;
            if itemize {
                ingest.itemize();
            }
            let mut held: Vec<[OwnedSemaphorePermit; 2]> = Vec::new();
            while let Some(feed) = rx.blocking_recv() {
                let (item, permits) = match feed {
                    Feed::Item(item, permits) => (item, permits),
                    Feed::Commit => {
                        ingest.commit()?;
                        held.clear();
                        continue;
                    }
                };
                if !item.pool.is_empty() && item.pool != pool {
                    return Err(crate::service::ServiceError::InvalidArgument {
                        field: "pool",
                        reason: format!(
                            "one stream fills one pool: it started with {pool:?} and an item names {:?}",
                            crate::types::clip_for_message(&item.pool, 100)
                        ),
                    }
                    .into());
                }
                let item = convert::ingest_item(item).map_err(|st| {
                    crate::service::ServiceError::InvalidArgument {
                        field: "items",
                        reason: st.message().to_owned(),
                    }
                })?;
                ingest.push(item)?;
                held.push(permits);
                if ingest.pending() == 0 {
                    held.clear();
                }
            }
            Ok(ingest.finish()?)
        });
        let own_kib = Arc::new(Semaphore::new(kib(limits.max_stream_bytes) as usize));
        let shared_kib = self.stream_kib.clone();
        let feed = async move {
            let mut next = Some(first);
            loop {
                let item = match next.take() {
                    Some(item) => item,
                    None => match tokio::time::timeout(limits.idle_timeout, stream.next()).await {
                        Err(_) => return Err(idle("item")),
                        Ok(None) => break,
                        Ok(Some(item)) => item.map_err(super::decode_errors::reclassify_status)?,
                    },
                };
                let cost = kib(item.encoded_len());
                let mut permits = Vec::with_capacity(2);
                let budgets = [
                    (&own_kib, kib(limits.max_stream_bytes)),
                    (&shared_kib, kib(limits.max_total_bytes)),
                ];
                for (budget, size) in budgets {
                    // An item larger than a whole budget takes all of it.
                    let cost = cost.min(size);
                    let permit = match budget.clone().try_acquire_many_owned(cost) {
                        Ok(p) => p,
                        Err(_) => {
                            if tx.send(Feed::Commit).await.is_err() {
                                return Ok(());
                            }
                            match tokio::time::timeout(
                                limits.idle_timeout,
                                budget.clone().acquire_many_owned(cost),
                            )
                            .await
                            {
                                Ok(Ok(p)) => p,
                                _ => {
                                    return Err(Status::resource_exhausted(format!(
                                        "the server holds {} MiB of streamed items not yet stored (--max-ingest-mib) and none was freed for {} s; retry with backoff",
                                        limits.max_total_bytes >> 20,
                                        limits.idle_timeout.as_secs()
                                    )))
                                }
                            }
                        }
                    };
                    permits.push(permit);
                }
                let permits: [OwnedSemaphorePermit; 2] = permits.try_into().expect("two budgets");
                if tx.send(Feed::Item(item, permits)).await.is_err() {
                    // The worker stopped (its error is the answer).
                    break;
                }
            }
            Ok::<(), Status>(())
        };
        let (summary, fed) = tokio::join!(worker, feed);
        let summary = summary?;
        fed?;
        self.metrics.vectors_stored.inc_by(summary.stored);
        Ok(Response::new(convert::ingest_summary(summary)))
    }
}
