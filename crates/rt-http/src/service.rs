//! Endpoints as tower Services.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use http::Response;

use crate::body::Body;

/// The future of an endpoint's `Service::call`.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Implements `tower_service::Service<http::Request<B>>`, for any request body `B`, for an
/// endpoint type that is `Clone` and has
/// `async fn handle<B>(&self, req: http::Request<B>) -> http::Response<rt_http::Body>`.
/// The service never fails: every refusal is an HTTP answer.
#[macro_export]
macro_rules! endpoint_service {
    ($endpoint:ty) => {
        impl<B> $crate::__private::tower_service::Service<$crate::__private::http::Request<B>>
            for $endpoint
        where
            B: $crate::__private::http_body::Body + Send + 'static,
            B::Data: Send,
            B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        {
            type Response = $crate::__private::http::Response<$crate::Body>;
            type Error = std::convert::Infallible;
            type Future = $crate::ResponseFuture;

            fn poll_ready(
                &mut self,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, req: $crate::__private::http::Request<B>) -> Self::Future {
                let endpoint = self.clone();
                Box::pin(async move { Ok(endpoint.handle(req).await) })
            }
        }
    };
}

/// Not public API: what [`endpoint_service!`] expands to.
#[doc(hidden)]
pub mod __private {
    pub use http;
    pub use http_body;
    pub use tower_service;
}

/// Builder-style setters for the public fields of a configuration struct, one per field:
/// `config.field(value)` returns the config with the field set. Every rt configuration uses
/// them, so all read alike: `Config::default().a(x).b(y)`.
#[macro_export]
macro_rules! setters {
    ($config:ty { $($field:ident: $t:ty),* $(,)? }) => {
        impl $config {
            $(
                #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
                pub fn $field(mut self, value: $t) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}
