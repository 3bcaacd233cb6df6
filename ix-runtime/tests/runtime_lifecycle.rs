//! The runtime's lifecycle: graceful shutdown (by handle, and by SIGTERM in a
//! child process) drains in-flight exchanges and cuts off tasks that never end
//! at the drain timeout; sleeps one wheel tick apart fire in deadline order.

use std::future::poll_fn;
use std::io::{BufRead, ErrorKind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use ix_runtime::net::{TcpListener, TcpStream};
use ix_runtime::time::{Instant, Sleep, now, sleep_until, timeout};
use ix_runtime::{ShutdownHandle, spawn_local};

#[macro_use]
mod runtime_support;
use runtime_support::pair::{
    Backing, Pair, Report, Signal, WAIT_LIMIT, accept_one, assert_clean, listen, run_alone, run_both, settle,
};
use runtime_support::read_to_end;

on_mem_and_kernel!(
    a_shutdown_lets_in_flight_exchanges_finish,
    a_task_that_never_finishes_is_cut_off_at_the_drain_timeout,
    sigterm_starts_the_same_graceful_shutdown,
    sleeps_one_tick_apart_fire_in_deadline_order,
);

/// The request of the drained exchanges; half is sent before the shutdown.
const REQUEST: &[u8] = b"question";
/// The answer to [`REQUEST`].
const ANSWER: &[u8] = b"answer:question";
/// Drain timeout of the runtimes whose exchanges must finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Reads the request, answers it, closes its side and reads to the end.
async fn answer(stream: TcpStream) -> Result<(), String> {
    let mut request = Vec::new();
    while request.len() < REQUEST.len() {
        match stream.recv().await {
            Ok(Some(chunk)) => request.extend_from_slice(&chunk),
            other => return Err(format!("request cut short after {request:?}: {other:?}")),
        }
    }
    let mut reply = b"answer:".to_vec();
    reply.extend_from_slice(&request);
    stream.send(Bytes::from(reply)).await.map_err(|e| format!("send: {e}"))?;
    stream.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    read_to_end(&stream).await.map(drop).map_err(|e| format!("recv after the answer: {e}"))
}

/// What the server side of a drained exchange saw.
#[derive(Clone, Default)]
struct ServerSide {
    listening: Signal,
    /// Set once a connection was accepted (its handler spawned).
    accepted: Signal,
    /// Set once `accept` failed and the listener was dropped.
    stopped_accepting: Signal,
    accept_error: Report<ErrorKind>,
    handler: Report<Result<(), String>>,
}

/// An accept loop as in the crate's example: every connection gets a detached
/// handler; the loop ends when `accept` fails (the shutdown), and the root
/// task returns at once, leaving the handlers to the drain.
async fn serve_until_shutdown(backing: Backing, side: ServerSide) {
    let listener = listen(backing, &side.listening);
    let error = loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let handler = side.handler.clone();
                drop(spawn_local(async move { handler.put(answer(stream).await) }));
                side.accepted.set();
            }
            Err(e) => break e,
        }
    };
    drop(listener);
    side.accept_error.put(error.kind());
    side.stopped_accepting.set();
}

/// What the client side of a drained exchange saw.
#[derive(Debug)]
struct ClientView {
    reply: Result<Vec<u8>, String>,
    late_connect: Result<(), ErrorKind>,
    shutdown_at: std::time::Instant,
}

/// Sends half the request, starts the shutdown (`shutdown` is `None` when the
/// test sends SIGTERM on READY instead), sends the rest once the server stopped
/// accepting, and reads the answer; then tries a new connection.
async fn talk_across_the_shutdown(
    backing: Backing,
    server: &ServerSide,
    shutdown: Option<ShutdownHandle>,
) -> ClientView {
    let addr = backing.server_addr(server.listening.wait("the server to listen").await);
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.send(Bytes::from_static(&REQUEST[..4])).await.expect("send");
    server.accepted.wait("the server to accept").await;
    let shutdown_at = std::time::Instant::now();
    match shutdown {
        Some(handle) => handle.shutdown(),
        None => println!("{CHILD_SAYS}READY"),
    }
    server.stopped_accepting.wait("the server to stop accepting").await;
    stream.send(Bytes::from_static(&REQUEST[4..])).await.expect("send");
    let reply = match timeout(WAIT_LIMIT, read_to_end(&stream)).await {
        Ok(Ok(reply)) => Ok(reply),
        other => Err(format!("{other:?}")),
    };
    let late_connect = TcpStream::connect(addr).await.map(drop).map_err(|e| e.kind());
    ClientView { reply, late_connect, shutdown_at }
}

/// Checks what both sides of a drained exchange saw.
fn check_drained_exchange(server: &ServerSide, view: &ClientView) {
    assert_eq!(server.accept_error.take("accept's error"), ErrorKind::ConnectionAborted);
    assert_eq!(server.handler.take("the handler's end"), Ok(()), "the in-flight exchange did not finish");
    assert_eq!(view.reply.as_deref(), Ok(ANSWER), "the in-flight exchange did not finish");
    assert_eq!(view.late_connect, Err(ErrorKind::ConnectionRefused), "a connection after the shutdown was not refused");
}

/// After `ShutdownHandle::shutdown`, `accept` fails and the accept loop ends,
/// but its detached handler finishes its exchange, and the core returns as
/// soon as it did, well before the drain timeout.
fn a_shutdown_lets_in_flight_exchanges_finish(backing: Backing) {
    let pair = Pair::new(backing);
    let server_rt = pair.server().drain_timeout(DRAIN).build().expect("runtime");
    let shutdown = server_rt.shutdown_handle();
    let (side, view) = (ServerSide::default(), Report::default());
    let outcome = run_both(
        server_rt,
        {
            let side = side.clone();
            move || serve_until_shutdown(backing, side)
        },
        pair.client().build().expect("runtime"),
        {
            let (side, view) = (side.clone(), view.clone());
            move || async move {
                view.put(talk_across_the_shutdown(backing, &side, Some(shutdown)).await);
                settle().await;
            }
        },
    );
    let view = view.take("the client's view");
    check_drained_exchange(&side, &view);
    let drained_in = outcome.server_returned.duration_since(view.shutdown_at);
    assert!(drained_in < DRAIN, "the core waited {drained_in:?}, as if a task had not finished");
    assert_eq!(outcome.server.executor.spawned, outcome.server.executor.completed, "a task was cut off");
    assert_clean("client", &outcome.client);
}

/// Sets its report when dropped: shows a cut-off task's future was dropped.
struct DropFlag(Report<bool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.put(true);
    }
}

/// A handler that never finishes keeps the core (and the first task, which
/// waits for it) past the shutdown until the drain timeout; then the run
/// returns, the task's future is dropped and its peer sees the connection end.
fn a_task_that_never_finishes_is_cut_off_at_the_drain_timeout(backing: Backing) {
    const SHORT_DRAIN: Duration = Duration::from_millis(300);
    let pair = Pair::new(backing);
    let server_rt = pair.server().drain_timeout(SHORT_DRAIN).build().expect("runtime");
    let shutdown = server_rt.shutdown_handle();
    let (listening, accepted, dropped, view) =
        (Signal::default(), Signal::default(), Report::default(), Report::default());
    let outcome = run_both(
        server_rt,
        {
            let (listening, accepted, dropped) = (listening.clone(), accepted.clone(), dropped.clone());
            move || async move {
                let listener = listen(backing, &listening);
                let stream = accept_one(&listener).await;
                accepted.set();
                let stuck = spawn_local(async move {
                    let _guard = DropFlag(dropped);
                    let _stream = stream;
                    std::future::pending::<()>().await;
                });
                while listener.accept().await.is_ok() {}
                let _ = stuck.await;
            }
        },
        pair.client().build().expect("runtime"),
        {
            let view = view.clone();
            move || async move {
                let addr = backing.server_addr(listening.wait("the server to listen").await);
                let stream = TcpStream::connect(addr).await.expect("connect");
                accepted.wait("the server to accept").await;
                let shutdown_at = std::time::Instant::now();
                shutdown.shutdown();
                let end =
                    timeout(WAIT_LIMIT, read_to_end(&stream)).await.map(|r| r.map(|b| b.len()).map_err(|e| e.kind()));
                view.put((shutdown_at, end));
                // No settling: the server is gone, the close cannot complete.
            }
        },
    );
    let (shutdown_at, end) = view.take("the client's view");
    let cut_after = outcome.server_returned.duration_since(shutdown_at);
    assert!(cut_after >= SHORT_DRAIN, "the core stopped {cut_after:?} after the shutdown, before the drain timeout");
    // Generous: the machine is shared; the point is that the run returned.
    assert!(cut_after < SHORT_DRAIN + Duration::from_secs(5), "the core ran {cut_after:?} past the shutdown");
    assert!(dropped.take("the cut-off task's drop"), "the cut-off task's future was not dropped");
    assert!(
        matches!(end, Ok(Ok(0)) | Ok(Err(ErrorKind::ConnectionReset))),
        "the peer of the cut-off connection did not see it end: {end:?}"
    );
    assert_eq!(outcome.client.executor.panics, 0);
}

/// Set in the child process that [`sigterm_starts_the_same_graceful_shutdown`]
/// starts: it runs the two runtimes and waits for the parent's SIGTERM.
const SIGTERM_CHILD_ENV: &str = "IX_RUNTIME_LIFECYCLE_SIGTERM_CHILD";
/// Starts each line the child prints for the parent (the test harness may
/// print on the same line before it).
const CHILD_SAYS: &str = "sigterm-child: ";

/// SIGTERM starts the same graceful shutdown as a `ShutdownHandle` in the
/// runtime that handles signals, and in no other runtime of the process. The
/// test binary runs itself again as a child process (this test alone, with
/// [`SIGTERM_CHILD_ENV`] set), which prints READY mid-exchange; the parent
/// sends SIGTERM and checks what the child reports and that it exits cleanly.
fn sigterm_starts_the_same_graceful_shutdown(backing: Backing) {
    if std::env::var_os(SIGTERM_CHILD_ENV).is_some() {
        sigterm_child(backing);
        return;
    }
    let name = match backing {
        Backing::Mem => "sigterm_starts_the_same_graceful_shutdown::on_mem",
        Backing::Kernel => "sigterm_starts_the_same_graceful_shutdown::on_kernel",
    };
    let mut child = ChildProcess(
        std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", name, "--nocapture", "--test-threads", "1"])
            .env(SIGTERM_CHILD_ENV, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the child"),
    );
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut output: Vec<String> = Vec::new();
    let ready = format!("{CHILD_SAYS}READY");
    while !output.iter().any(|l| l.ends_with(&ready)) {
        match lines.recv_timeout(WAIT_LIMIT) {
            Ok(line) => output.push(line),
            Err(_) => panic!("the child never got ready; it said {output:?}"),
        }
    }
    let pid = libc::pid_t::try_from(child.0.id()).expect("a pid");
    // SAFETY: kill only sends a signal, to the child this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill: {}", std::io::Error::last_os_error());
    while let Ok(line) = lines.recv_timeout(WAIT_LIMIT * 2) {
        output.push(line);
    }
    let status = child.wait(WAIT_LIMIT);
    assert!(status.success(), "the child failed ({status}); it said {output:?}");
    // DRAINED: accept failed with ConnectionAborted and the exchange finished.
    for expected in ["DRAINED ok", "CLIENT-LISTENER still accepting"] {
        let expected = format!("{CHILD_SAYS}{expected}");
        assert!(
            output.iter().any(|l| l.ends_with(&expected)),
            "the child did not say {expected:?}; it said {output:?}"
        );
    }
}

/// The child's side: a server that handles signals, a client that does not
/// (and keeps a listener of its own), an exchange across the SIGTERM.
fn sigterm_child(backing: Backing) {
    let pair = Pair::new(backing);
    let server_rt = pair.server().handle_signals(true).drain_timeout(DRAIN).build().expect("runtime");
    let (side, view, own_listener) = (ServerSide::default(), Report::default(), Report::default());
    run_both(
        server_rt,
        {
            let side = side.clone();
            move || serve_until_shutdown(backing, side)
        },
        pair.client().build().expect("runtime"),
        {
            let (side, view, own_listener) = (side.clone(), view.clone(), own_listener.clone());
            move || async move {
                let listener = TcpListener::bind(backing.second_port()).expect("listen");
                view.put(talk_across_the_shutdown(backing, &side, None).await);
                // Not draining: its accept is still pending, not failed.
                own_listener.put(listener.accept().now_or_never().is_none());
                drop(listener);
                settle().await;
            }
        },
    );
    let view = view.take("the client's view");
    check_drained_exchange(&side, &view);
    println!("{CHILD_SAYS}DRAINED ok");
    if own_listener.take("the client's listener") {
        println!("{CHILD_SAYS}CLIENT-LISTENER still accepting");
    }
}

/// A child process, killed and reaped if the test fails before it exits.
struct ChildProcess(std::process::Child);

impl ChildProcess {
    /// Waits for the exit, at most `limit`.
    ///
    /// # Panics
    /// When the child does not exit in time (it is killed).
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for the child") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "the child did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The timer wheel's resolution (`ix_net::timer::TICK_MICROS`).
const TICK: Duration = Duration::from_micros(ix_net::timer::TICK_MICROS);
/// Sleeps per round; 37 (the scramble step) is coprime with it.
const SLEEPS: usize = 64;
/// Rounds whose sleeps could not all be armed before the first deadline (a
/// stalled machine) are run again, at most this many times.
const ARMING_ATTEMPTS: usize = 5;

/// Sleeps with deadlines exactly one wheel tick apart, armed in scrambled
/// order, wake in deadline order, each once, never before its deadline by the
/// core's clock: a sleep woken early would be polled a third time (it re-arms).
/// Once with deadlines in the wheel's lowest level, once in the next (cascaded).
fn sleeps_one_tick_apart_fire_in_deadline_order(backing: Backing) {
    let pair = Pair::new(backing);
    let report = Report::default();
    let out = report.clone();
    let stats = run_alone(pair.client().build().expect("runtime"), move || async move {
        let mut rounds = Vec::new();
        for lead in [Duration::from_millis(2), Duration::from_millis(30)] {
            let mut round = TickRound::run(lead).await;
            for _ in 1..ARMING_ATTEMPTS {
                if round.armed_in_time {
                    break;
                }
                round = TickRound::run(lead * 2).await;
            }
            rounds.push(round);
        }
        out.put(rounds);
    });
    for round in report.take("the rounds") {
        assert!(round.armed_in_time, "the machine stalled while arming every round; nothing was checked");
        let order: Vec<usize> = round.wakes.iter().map(|&(i, _)| i).collect();
        assert_eq!(order, (0..SLEEPS).collect::<Vec<_>>(), "wake order (sleep i is due at base + i ticks)");
        for &(i, at) in &round.wakes {
            assert!(
                at >= round.deadlines[i],
                "sleep {i} woken at {at:?}, before its deadline {:?}",
                round.deadlines[i]
            );
        }
        assert!(round.polls.iter().all(|&p| p == 2), "polls per sleep {:?}: 2 is armed, then ready", round.polls);
    }
    assert_eq!(stats.executor.panics, 0);
}

/// One round of [`sleeps_one_tick_apart_fire_in_deadline_order`].
struct TickRound {
    /// Every sleep was armed before the first deadline.
    armed_in_time: bool,
    /// (sleep, core clock) at each wake, in wake order.
    wakes: Vec<(usize, Instant)>,
    /// Each sleep's deadline.
    deadlines: Vec<Instant>,
    /// Times each sleep was polled.
    polls: Vec<u32>,
}

/// The waker of one sleep: logs the wake with the core's clock and wakes the task.
struct Alarm {
    index: usize,
    wakes: Arc<Mutex<Vec<(usize, Instant)>>>,
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Alarm {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.lock().unwrap().push((self.index, now()));
        self.woken.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.lock().unwrap().as_ref() {
            task.wake_by_ref();
        }
    }
}

/// One sleep of a round, polled with its own [`Alarm`].
struct ProbedSleep {
    sleep: Pin<Box<Sleep>>,
    alarm: Arc<Alarm>,
    polls: u32,
    ready: bool,
}

impl TickRound {
    async fn run(lead: Duration) -> TickRound {
        let base = now() + lead;
        let deadlines: Vec<Instant> = (0..SLEEPS).map(|i| base + TICK * i as u32).collect();
        let wakes = Arc::new(Mutex::new(Vec::new()));
        let mut sleeps: Vec<ProbedSleep> = (0..SLEEPS)
            .map(|k| (k * 37) % SLEEPS)
            .map(|index| ProbedSleep {
                sleep: Box::pin(sleep_until(deadlines[index])),
                alarm: Arc::new(Alarm {
                    index,
                    wakes: wakes.clone(),
                    woken: AtomicBool::new(false),
                    task: Mutex::new(None),
                }),
                polls: 0,
                ready: false,
            })
            .collect();
        let mut armed_in_time = None;
        poll_fn(|cx: &mut Context<'_>| {
            for probed in sleeps.iter_mut().filter(|s| !s.ready) {
                // The first poll arms every sleep; later ones poll the woken.
                if armed_in_time.is_some() && !probed.alarm.woken.swap(false, Ordering::SeqCst) {
                    continue;
                }
                *probed.alarm.task.lock().unwrap() = Some(cx.waker().clone());
                let waker = Waker::from(probed.alarm.clone());
                probed.polls += 1;
                probed.ready = probed.sleep.as_mut().poll(&mut Context::from_waker(&waker)).is_ready();
            }
            armed_in_time.get_or_insert_with(|| now() < base);
            if sleeps.iter().all(|s| s.ready) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        let mut polls = vec![0; SLEEPS];
        for probed in &sleeps {
            polls[probed.alarm.index] = probed.polls;
        }
        let wakes = wakes.lock().unwrap().clone();
        TickRound { armed_in_time: armed_in_time.unwrap_or(false), wakes, deadlines, polls }
    }
}
