//! The gRPC service the `rpc` experiment calls: `lab.Adder/Add`, written
//! out by hand.
//!
//! `tonic-build` would generate this from a `.proto` file:
//!
//! ```proto
//! syntax = "proto3";
//! package lab;
//! service Adder { rpc Add (AddRequest) returns (AddReply); }
//! message AddRequest { uint64 a = 1; uint64 b = 2; }
//! message AddReply { uint64 sum = 1; }
//! ```
//!
//! Writing it by hand keeps `protoc` out of the build and shows what the
//! generated code is: two `prost` messages, a tower `Service` over HTTP/2
//! requests that routes by path to a `tonic::server::Grpc` (which decodes
//! the body, calls the handler and encodes the reply), and a client that is
//! a `tonic::client::Grpc` over a `Channel` with the method's path.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::metadata::MetadataValue;
use tonic::server::{Grpc, NamedService};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::Service;

use super::propagate::REQUEST_ID;

/// `AddRequest { a, b }`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub(crate) struct AddRequest {
    #[prost(uint64, tag = "1")]
    pub(crate) a: u64,
    #[prost(uint64, tag = "2")]
    pub(crate) b: u64,
}

/// `AddReply { sum }`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub(crate) struct AddReply {
    #[prost(uint64, tag = "1")]
    pub(crate) sum: u64,
}

/// The method's path on the wire: `/package.Service/Method`.
const ADD: &str = "/lab.Adder/Add";

/// The server side: routes `/lab.Adder/Add` to [`add`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AdderServer;

impl NamedService for AdderServer {
    const NAME: &'static str = "lab.Adder";
}

/// The handler. The event is inside the span the server's `trace_fn`
/// opened for the request (see `propagate`), so it carries the caller's
/// request id without being told.
fn add(request: Request<AddRequest>) -> Result<Response<AddReply>, Status> {
    let AddRequest { a, b } = request.into_inner();
    let sum = a
        .checked_add(b)
        .ok_or_else(|| Status::out_of_range("a + b overflows u64"))?;
    tracing::debug!(sum, "added");
    Ok(Response::new(AddReply { sum }))
}

/// [`add`] as the `UnaryService` that `Grpc::unary` drives.
struct Add;

impl Service<Request<AddRequest>> for Add {
    type Response = Response<AddReply>;
    type Error = Status;
    type Future = Ready<Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<AddRequest>) -> Self::Future {
        ready(add(request))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Service<http::Request<Body>> for AdderServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == ADD {
            Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<AddReply, AddRequest>::default());
                Ok(grpc.unary(Add, request).await)
            })
        } else {
            Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) })
        }
    }
}

/// The client side: one per caller, cheap to clone (a `Channel` is a
/// handle to one HTTP/2 connection that multiplexes every call).
#[derive(Debug, Clone)]
pub(crate) struct AdderClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl AdderClient {
    pub(crate) fn new(channel: Channel) -> Self {
        AdderClient {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    /// Calls `Add`, sending `request_id` in the `x-request-id` metadata so
    /// that the server's span carries the caller's id.
    pub(crate) async fn add(&mut self, a: u64, b: u64, request_id: u64) -> Result<u64, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
        let mut request = Request::new(AddRequest { a, b });
        request
            .metadata_mut()
            .insert(REQUEST_ID, MetadataValue::from(request_id));
        let path = http::uri::PathAndQuery::from_static(ADD);
        let reply: Response<AddReply> = self
            .grpc
            .unary(request, path, ProstCodec::<AddRequest, AddReply>::default())
            .await?;
        Ok(reply.into_inner().sum)
    }
}
