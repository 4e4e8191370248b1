//! The channel to the backend, as the calls use it.
//!
//! tonic's request bodies never say that they have ended, so hyper ends
//! every request with an extra, empty DATA frame. The backend then sees each
//! unary request message as a small DATA frame that does not end its
//! stream, and h2 (0.4.16 and later) charges such frames against a
//! per-connection budget meant to catch floods of tiny frames: with
//! thousands of calls in flight on the one shared connection, a backend
//! with default settings closes it with ENHANCE_YOUR_CALM, failing every
//! call. Looking one frame ahead lets the last message end the stream.
//!
//! A bridge given several backends, or a name of several addresses,
//! spreads its calls over them: see [`resolve`].

pub(crate) mod resolve;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::transport::Channel;
use tonic::transport::channel::ResponseFuture;

/// The shared channel; each request's last frame carries END_STREAM.
#[derive(Debug, Clone)]
pub(crate) struct Backend(pub(crate) Channel);

impl Service<http::Request<Body>> for Backend {
    type Response = <Channel as Service<http::Request<Body>>>::Response;
    type Error = <Channel as Service<http::Request<Body>>>::Error;
    type Future = ReportsFailure;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        ReportsFailure(
            self.0
                .call(request.map(|body| Body::new(EndsWithLastFrame::new(body)))),
        )
    }
}

/// A call's response; a call that fails before a backend answers (no
/// connection, or a broken one) tells the resolvers, which then check that
/// every backend address still takes connections.
pub(crate) struct ReportsFailure(ResponseFuture);

impl Future for ReportsFailure {
    type Output = <ResponseFuture as Future>::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(Pin::new(&mut self.0).poll(cx));
        if result.is_err() {
            resolve::call_failed();
        }
        Poll::Ready(result)
    }
}

/// A body that knows it has ended as soon as its last frame is out.
struct EndsWithLastFrame {
    inner: Body,
    /// The frame read ahead, to hand out next.
    next: Option<Result<Frame<Bytes>, Status>>,
    /// The inner body has no more frames.
    ended: bool,
}

impl EndsWithLastFrame {
    fn new(inner: Body) -> Self {
        let ended = inner.is_end_stream();
        Self {
            inner,
            next: None,
            ended,
        }
    }
}

impl http_body::Body for EndsWithLastFrame {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = match this.next.take() {
            Some(frame) => frame,
            None if this.ended => return Poll::Ready(None),
            None => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(frame) => frame,
                None => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
            },
        };
        if frame.is_ok() && !this.ended {
            // Whatever comes next is ready now or later; if it is the end,
            // this frame is the last.
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => this.ended = true,
                Poll::Ready(Some(next)) => this.next = Some(next),
                Poll::Pending => {}
            }
        }
        Poll::Ready(Some(frame))
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.next.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(Ok(frame)) = &self.next
            && let Some(data) = frame.data_ref()
        {
            let buffered = data.len() as u64;
            hint.set_lower(hint.lower() + buffered);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + buffered);
            }
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream::{self, StreamExt};
    use std::future::poll_fn;

    fn body_of(chunks: &'static [&'static str]) -> EndsWithLastFrame {
        let frames = stream::iter(
            chunks
                .iter()
                .map(|chunk| Ok::<_, Status>(Frame::data(Bytes::from_static(chunk.as_bytes())))),
        );
        EndsWithLastFrame::new(Body::new(StreamBody(frames)))
    }

    /// A body over a stream of frames, as tonic's encoder makes one.
    struct StreamBody<S>(S);

    impl<S> http_body::Body for StreamBody<S>
    where
        S: futures_util::Stream<Item = Result<Frame<Bytes>, Status>> + Unpin,
    {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            self.0.poll_next_unpin(cx)
        }
    }

    async fn next_data(body: &mut EndsWithLastFrame) -> Option<String> {
        let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        let data = frame.unwrap().into_data().unwrap();
        Some(String::from_utf8(data.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_single_message_ends_the_body_as_it_goes_out() {
        let mut body = body_of(&["hello"]);
        assert!(!body.is_end_stream());
        assert_eq!(next_data(&mut body).await.as_deref(), Some("hello"));
        assert!(body.is_end_stream(), "the one message is the last");
        assert_eq!(next_data(&mut body).await, None);
    }

    #[tokio::test]
    async fn only_the_last_of_several_messages_ends_the_body() {
        let mut body = body_of(&["a", "b", "c"]);
        for expected in ["a", "b"] {
            assert_eq!(next_data(&mut body).await.as_deref(), Some(expected));
            assert!(!body.is_end_stream());
        }
        assert_eq!(next_data(&mut body).await.as_deref(), Some("c"));
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_message_with_more_to_come_later_does_not_end_the_body() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
        let frames = frames_from(receiver);
        let mut body = EndsWithLastFrame::new(Body::new(StreamBody(frames)));
        sender.send("first").unwrap();
        assert_eq!(next_data(&mut body).await.as_deref(), Some("first"));
        assert!(!body.is_end_stream(), "the client may still send more");
        drop(sender);
        assert_eq!(next_data(&mut body).await, None);
        assert!(body.is_end_stream());
    }

    fn frames_from(
        mut receiver: tokio::sync::mpsc::UnboundedReceiver<&'static str>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Status>> + Unpin {
        stream::poll_fn(move |cx| {
            receiver.poll_recv(cx).map(|chunk| {
                chunk.map(|chunk| Ok(Frame::data(Bytes::from_static(chunk.as_bytes()))))
            })
        })
    }
}
