//! Hostile bytes into one connection served by `ix-hyper-compat`'s `Server` (protocol detection, HTTP/1.1,
//! HTTP/2 with prior knowledge, h2c upgrade, the watchdog and the lingering close), on a single-threaded
//! executor with an in-memory IO: the same connection code as on IX, without a network.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::{LocalPool, LocalSpawner};
use futures::task::LocalSpawnExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::rt::{ReadBufCursor, Sleep, Timer};
use hyper::service::service_fn;
use hyper::{Request, Response};
use ix_hyper_compat::{Accept, ServerConfig};

use crate::input::{FuzzInput, cut_into_reads};

/// Most bytes of a request body the service reads.
const BODY_MAX_BYTES: usize = 64 * 1024;
/// Most bytes one read hands the server.
const READ_CHUNK_MAX_BYTES: usize = 4096;
/// Times the harness may let every pending timer fire once the client has closed, before the connection
/// counts as hung.
const TIMER_ROUNDS_MAX: usize = 16;
/// Executor rounds after which the connection counts as spinning.
const ROUNDS_MAX: usize = 100_000;
/// The server may write at most this many bytes per byte received, plus [`WRITE_SLACK_BYTES`].
const WRITE_AMPLIFICATION_MAX: usize = 64;
/// See [`WRITE_AMPLIFICATION_MAX`].
const WRITE_SLACK_BYTES: usize = 64 * 1024;

/// hyper's executor on a `futures` local pool: tasks need not be `Send`, as on an IX core.
#[derive(Clone)]
struct PoolExec(LocalSpawner);

impl<F: Future + 'static> hyper::rt::Executor<F> for PoolExec {
    fn execute(&self, future: F) {
        self.0
            .spawn_local(async move {
                future.await;
            })
            .expect("the pool outlives the server");
    }
}

/// A sleep that ends when the harness lets time pass ([`ManualTimer::fire_all`]).
struct ManualSleep {
    state: Arc<SleepState>,
}

#[derive(Default)]
struct SleepState {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *self.state.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Sleep for ManualSleep {}

/// hyper's timer whose sleeps end only when the harness fires them (the server's watchdog reads the real
/// clock, so a fired sleep it finds early is simply re-armed).
#[derive(Clone, Default)]
struct ManualTimer {
    sleeps: Arc<Mutex<Vec<Weak<SleepState>>>>,
}

impl ManualTimer {
    /// Ends every pending sleep; returns how many there were.
    fn fire_all(&self) -> usize {
        let sleeps = std::mem::take(&mut *self.sleeps.lock().unwrap_or_else(|p| p.into_inner()));
        let mut fired = 0;
        for state in sleeps.iter().filter_map(Weak::upgrade) {
            if !state.fired.swap(true, Ordering::AcqRel) {
                fired += 1;
                if let Some(waker) = state.waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    waker.wake();
                }
            }
        }
        fired
    }
}

impl Timer for ManualTimer {
    fn sleep(&self, _: Duration) -> Pin<Box<dyn Sleep>> {
        let state = Arc::new(SleepState::default());
        self.sleeps.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::downgrade(&state));
        Box::pin(ManualSleep { state })
    }

    fn sleep_until(&self, _: Instant) -> Pin<Box<dyn Sleep>> {
        self.sleep(Duration::ZERO)
    }
}

/// What the server wrote, shared with the harness.
#[derive(Default)]
struct Written {
    bytes: usize,
    shut_down: bool,
}

/// The client: hands the server its chunks (sometimes after a `Pending`), then the end of the stream; takes
/// whatever the server writes.
struct HostileIo {
    chunks: Vec<(Vec<u8>, bool)>,
    next: usize,
    offset: usize,
    pended: bool,
    written: Rc<RefCell<Written>>,
}

impl hyper::rt::Read for HostileIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some((chunk, pend_first)) = this.chunks.get(this.next) else {
            return Poll::Ready(Ok(()));
        };
        if *pend_first && !this.pended {
            this.pended = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = (chunk.len() - this.offset).min(buf.remaining());
        buf.put_slice(&chunk[this.offset..this.offset + n]);
        this.offset += n;
        if this.offset == chunk.len() {
            (this.next, this.offset, this.pended) = (this.next + 1, 0, false);
        }
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for HostileIo {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut written = self.written.borrow_mut();
        if written.shut_down {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        written.bytes += buf.len();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.written.borrow_mut().shut_down = true;
        Poll::Ready(Ok(()))
    }
}

/// Hands out the one connection, then nothing.
struct OneConnection(Option<HostileIo>);

impl Accept for OneConnection {
    type Io = HostileIo;

    fn poll_accept(&mut self, _: &mut Context<'_>) -> Poll<io::Result<(HostileIo, SocketAddr)>> {
        match self.0.take() {
            Some(io) => Poll::Ready(Ok((io, SocketAddr::from((Ipv4Addr::LOCALHOST, 40000))))),
            None => Poll::Pending,
        }
    }
}

/// Records whether the server's own future was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// Reads the body (up to [`BODY_MAX_BYTES`]) and answers with its length.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let read = Limited::new(request.into_body(), BODY_MAX_BYTES).collect().await;
    let text = match read {
        Ok(body) => format!("read {} bytes\n", body.to_bytes().len()),
        Err(e) => format!("body refused: {e}\n"),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// Cuts the stream into reads as the first byte says: small or large, some after a `Pending`.
fn cut(input: &mut FuzzInput<'_>) -> Vec<(Vec<u8>, bool)> {
    let choice = input.u8();
    let stream = input.take_rest();
    cut_into_reads(stream, choice, 64, READ_CHUNK_MAX_BYTES)
        .into_iter()
        .map(|(read, coin)| (read.to_vec(), choice & 0x40 != 0 && coin))
        .collect()
}

/// Input: a byte choosing how reads are cut, then what the client sends before it closes. Invariants:
/// nothing panics; the connection ends (the server neither hangs on a closed client nor spins); it is counted
/// once, as closed or as a protocol or transport error; and the server writes a bounded amount per byte
/// received.
///
/// # Panics
/// When an invariant breaks.
pub fn run(data: &[u8]) {
    let mut input = FuzzInput::new(data);
    let chunks = cut(&mut input);
    let received: usize = chunks.iter().map(|(c, _)| c.len()).sum();
    let written = Rc::new(RefCell::new(Written::default()));
    let io = HostileIo { chunks, next: 0, offset: 0, pended: false, written: written.clone() };

    let mut pool = LocalPool::new();
    let timer = ManualTimer::default();
    let config = ServerConfig { max_header_bytes: 8 * 1024, max_headers: 32, ..ServerConfig::default() };
    let server = ix_hyper_compat::Server::with_runtime(config, PoolExec(pool.spawner()), timer.clone());
    let mut serve = pin!(server.serve_with(OneConnection(Some(io)), |_peer| service_fn(answer)));
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut timer_rounds = 0;
    let mut rounds = 0;
    loop {
        flag.0.store(false, Ordering::Release);
        assert!(serve.as_mut().poll(&mut cx).is_pending(), "the accept loop ended on its own");
        pool.run_until_stalled();
        let counters = server.counters();
        if counters.accepted == 1 && counters.live == 0 {
            let ends = counters.closed + counters.protocol_errors + counters.io_errors;
            assert_eq!(ends, 1, "one connection, one end: {counters:?}");
            break;
        }
        rounds += 1;
        assert!(rounds < ROUNDS_MAX, "the connection spins: {counters:?}");
        if !flag.0.load(Ordering::Acquire) {
            // Nothing can move but time.
            timer_rounds += 1;
            let fired = timer.fire_all();
            assert!(
                fired > 0 && timer_rounds <= TIMER_ROUNDS_MAX,
                "the connection hangs after the client closed ({fired} timers pending): {counters:?}"
            );
        }
    }
    let out = written.borrow().bytes;
    assert!(
        out <= received * WRITE_AMPLIFICATION_MAX + WRITE_SLACK_BYTES,
        "{out} bytes written for {received} received"
    );
}
