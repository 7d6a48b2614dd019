//! Filling the cache from a response that streams to the client at the same
//! time: each frame is passed on at once and copied aside until the body
//! ends (then stored) or outgrows `cache.max_object_size` (then the copy is
//! dropped and the rest simply streams through). Nothing is buffered whole
//! beyond the cap and the client never waits for the cache.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::HttpCache;
use super::entry::{Entry, Plan};
use super::flight::FlightGuard;
use crate::body::{Body, BoxError};

/// What a fill stores when its body completes.
pub(crate) struct Filling {
    pub(crate) cache: Arc<HttpCache>,
    pub(crate) primary: String,
    pub(crate) plan: Plan,
    pub(crate) max_object_size: usize,
    pub(crate) flight: Option<FlightGuard>,
    chunks: Vec<Bytes>,
    len: usize,
}

impl Filling {
    /// A fill of `plan` under `primary`, landing `flight` when done.
    pub(crate) fn new(
        cache: Arc<HttpCache>,
        primary: String,
        plan: Plan,
        max_object_size: u64,
        flight: Option<FlightGuard>,
    ) -> Filling {
        Filling {
            cache,
            primary,
            plan,
            max_object_size: usize::try_from(max_object_size).unwrap_or(usize::MAX),
            flight,
            chunks: Vec::new(),
            len: 0,
        }
    }

    /// Keep a copy of `data`; false once the body is over the cap.
    fn push(&mut self, data: &Bytes) -> bool {
        self.len += data.len();
        if self.len > self.max_object_size {
            return false;
        }
        // Bytes clones share the buffer: no copy until the end.
        self.chunks.push(data.clone());
        true
    }

    /// Store the complete body.
    pub(crate) fn commit(self) {
        let Filling {
            cache,
            primary,
            plan,
            flight,
            chunks,
            len,
            ..
        } = self;
        let body = match chunks.len() {
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(len);
                for c in &chunks {
                    all.extend_from_slice(c);
                }
                all.freeze()
            }
        };
        let request_headers = plan.request_headers.clone();
        cache.insert(&primary, &request_headers, Entry::new(plan, body));
        if let Some(f) = flight {
            f.land(true);
        }
    }
}

/// The upstream body, teed into a [`Filling`].
pub(crate) struct TeeBody {
    inner: Body,
    fill: Option<Filling>,
}

impl TeeBody {
    /// Stream `inner` and store it through `fill` if it completes within the cap.
    pub(crate) fn wrap(inner: Body, fill: Filling) -> Body {
        crate::body::boxed(TeeBody {
            inner,
            fill: Some(fill),
        })
    }
}

impl HttpBody for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) => {
                    if let Some(fill) = &mut self.fill {
                        if !fill.push(data) {
                            // Over the cap: stop copying; dropping lands the flight unstored.
                            self.fill = None;
                            metrics::counter!("sluice_gateway_cache_too_large_total").increment(1);
                        } else if self.inner.is_end_stream() {
                            // hyper stops polling once Content-Length is met: commit now.
                            if let Some(fill) = self.fill.take() {
                                fill.commit();
                            }
                        }
                    }
                }
                // Trailers are not stored; a response that has them is not either.
                None => self.fill = None,
            },
            Poll::Ready(None) => {
                if let Some(fill) = self.fill.take() {
                    fill.commit();
                }
            }
            Poll::Ready(Some(Err(_))) => self.fill = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Report the end only through poll_frame, so the fill always commits.
        self.fill.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
