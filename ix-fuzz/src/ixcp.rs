//! The control plane (`ix_driver::ixcp`) as hostile dataplanes meet it: its admission protocol, and its CPU
//! allocation driven by the core boards the dataplanes write.
//!
//! [`message`]: the bytes an unprivileged dataplane, or anyone who can reach the daemon's socket, sends to the
//! root daemon. Decoding must give a message or a
//! `ProtocolError`; whatever decodes must encode back to the very bytes it came from (the encoding is
//! canonical: fixed fields, length-prefixed UTF-8 names, counts within their limits), but for a refusal, whose
//! message is read with lossy UTF-8 and cut to 512 bytes when encoded; and the refusal the daemon answers an
//! error with must encode and decode to itself.

use std::time::Duration;

use ix_driver::ixcp::cpu_allocation::{Allocation, ManagedCore, Tenant, Threads};
use ix_driver::ixcp::{
    CoreBoard, CoreMode, CoreSample, CpuPolicy, DaemonStats, Message, REFUSAL_MESSAGE_BYTES_MAX, Refusal,
};

use crate::input::FuzzInput;

/// One message as the daemon (or a dataplane) receives it.
///
/// # Panics
/// When decoding panics, when a decoded message does not encode back to its bytes (a refusal: to itself, its
/// message cut), or when the refusal for an error does not survive its own round trip.
pub fn message(data: &[u8]) {
    match Message::decode(data) {
        Ok(Message::Refusal(refusal)) => {
            let bytes = Message::Refusal(refusal.clone()).encode();
            let expected = Refusal { message: cut(&refusal.message).to_owned(), ..refusal };
            assert_eq!(Message::decode(&bytes), Ok(Message::Refusal(expected)));
        }
        Ok(message) => {
            let bytes = message.encode();
            assert_eq!(bytes, data, "{message:?} encodes to other bytes");
        }
        Err(error) => {
            let answer = Message::Refusal(error.refusal());
            assert_eq!(Message::decode(&answer.encode()), Ok(answer));
        }
    }
}

/// `message` cut to at most [`REFUSAL_MESSAGE_BYTES_MAX`] bytes on a character boundary (written again here
/// on purpose: the harness's expectation, not the encoder's code).
fn cut(message: &str) -> &str {
    let mut end = message.len().min(REFUSAL_MESSAGE_BYTES_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Dataplanes, cores per dataplane, and thread ids of the made-up host at most in [`allocation`].
const TENANTS_MAX: usize = 4;
const CORES_MAX: usize = 3;
const TIDS: usize = 10;
/// The process id of no dataplane (a thread id given to it is another process's).
const FOREIGN_PID: i32 = 999;
/// Operations of one input at most (a bound on the time one input takes; `fuzz.sh`'s default limit of 1,600
/// bytes holds about 530 of the shortest).
const OPERATIONS_MAX: usize = 1024;

thread_local! {
    /// The boards, made once (a memfd each) and cleared for every input.
    static BOARDS: Vec<CoreBoard> =
        (0..TENANTS_MAX).map(|_| CoreBoard::create(CORES_MAX).expect("a core board (memfd)")).collect();
}

/// The made-up host: which process owns each thread id (ids 1 to `TIDS` - 1; any other id is no one's), and
/// the placements the allocation made since the last look.
struct HostTable {
    owner: [Option<i32>; TIDS],
    placed: Vec<(u64, Vec<usize>)>,
}

impl HostTable {
    fn owner(&self, tid: u64) -> Option<i32> {
        usize::try_from(tid).ok().and_then(|tid| self.owner.get(tid).copied().flatten())
    }
}

impl Threads for HostTable {
    fn is_thread_of(&mut self, pid: i32, tid: u64) -> bool {
        self.owner(tid) == Some(pid)
    }

    fn place(&mut self, tid: u64, cpus: &[usize], _slice: Option<Duration>) {
        self.placed.push((tid, cpus.to_vec()));
    }
}

/// `ixcp`'s CPU allocation over a run of operations: dataplanes publishing whatever they like on their
/// boards (thread ids of their own, of others and of no one, counters going back, jumping or wrapping,
/// self-poll counts), threads exiting and their ids going to other processes, shares changed by the
/// operator, periods and short windows of any length.
///
/// # Panics
/// When an allocation step breaks what `ix_driver::ixcp::cpu_allocation` keeps true: a polling CPU held twice
/// or not one of the polling set, a dataplane over its share after a decision (or given a CPU beyond it by a
/// step), a core's CPU, mode and board word disagreeing, a load outside 0..=1, or a thread moved that is not
/// one of its dataplane's (or moved where its core was not sent).
pub fn allocation(data: &[u8]) {
    BOARDS.with(|boards| run_allocation(boards, &mut FuzzInput::new(data)));
}

/// Runs one input of [`allocation`]; what the allocation counted.
fn run_allocation(boards: &[CoreBoard], input: &mut FuzzInput<'_>) -> DaemonStats {
    let tenants = 1 + input.below(TENANTS_MAX);
    // CPUs 0 to 5; the polling and shared sets may overlap, as the configuration allows.
    let mask = input.u8();
    let polling: Vec<usize> = (0..6).filter(|cpu| mask >> cpu & 1 == 1).collect();
    let shared: Vec<usize> = match input.below(3) {
        0 => vec![0, 1],
        1 => vec![0],
        _ => (0..6).collect(),
    };
    let policy = policy_from(input);
    let allocation = Allocation { policy: &policy, polling: &polling, shared: &shared };
    let mut cores: Vec<Vec<ManagedCore>> =
        (0..tenants).map(|_| vec![ManagedCore::default(); 1 + input.below(CORES_MAX)]).collect();
    let mut shares: Vec<u16> = (0..tenants).map(|_| input.below(4) as u16).collect();
    let pid = |tenant: usize| 100 + tenant as i32;
    let mut host = HostTable { owner: [None; TIDS], placed: Vec::new() };
    for tid in 1..TIDS {
        host.owner[tid] = Some(pid(tid % tenants));
    }
    let mut published = [[CoreSample::default(); CORES_MAX]; TENANTS_MAX];
    for board in &boards[..tenants] {
        for core in 0..CORES_MAX {
            board.publish(core, &CoreSample::default());
            board.ask_mode(core, CoreMode::Block);
            board.answer_self_polls(core, 0);
        }
    }
    let mut stats = DaemonStats::default();
    for _ in 0..OPERATIONS_MAX {
        if input.is_empty() {
            break;
        }
        match input.below(6) {
            0 | 1 => {
                let tenant = input.below(tenants);
                let core = input.below(cores[tenant].len());
                let sample = hostile_sample(input, &published[tenant][core]);
                boards[tenant].publish(core, &sample);
                published[tenant][core] = sample;
            }
            2 => {
                let shares_before = shares.clone();
                let held_before = held_per_tenant(&cores);
                let wall = Duration::from_micros(u64::from(input.u16()) * 10);
                let mut view = tenant_view(boards, &mut cores, &shares, pid);
                allocation.decide(&mut view, wall, &mut host, &mut stats);
                check(&allocation, boards, &cores, &mut host, pid);
                for (tenant, held) in held_per_tenant(&cores).into_iter().enumerate() {
                    assert!(
                        held <= usize::from(shares_before[tenant]),
                        "tenant {tenant} holds {held} CPUs after a decision, share {}; before {held_before:?}",
                        shares_before[tenant]
                    );
                }
            }
            3 => {
                let held_before = held_per_tenant(&cores);
                let wall = Duration::from_micros(u64::from(input.u16()));
                let mut view = tenant_view(boards, &mut cores, &shares, pid);
                allocation.watch_for_steps(&mut view, wall, &mut host, &mut stats);
                check(&allocation, boards, &cores, &mut host, pid);
                for (tenant, held) in held_per_tenant(&cores).into_iter().enumerate() {
                    let allowed = usize::from(shares[tenant]).max(held_before[tenant]);
                    assert!(
                        held <= allowed,
                        "a step left tenant {tenant} {held} CPUs, share {}, {} before",
                        shares[tenant],
                        held_before[tenant]
                    );
                }
            }
            4 => {
                let tenant = input.below(tenants);
                shares[tenant] = input.below(5) as u16;
            }
            _ => {
                // A thread exits; its id is free, or taken by a thread of another process.
                let tid = 1 + input.below(TIDS - 1);
                host.owner[tid] = match input.below(3) {
                    0 => None,
                    1 => Some(FOREIGN_PID),
                    _ => Some(pid(input.below(tenants))),
                };
            }
        }
    }
    stats
}

/// A policy that passes `CpuPolicy::check`, its thresholds from the input.
fn policy_from(input: &mut FuzzInput<'_>) -> CpuPolicy {
    let poll_above = f64::from(1 + u32::from(input.u8())) / 256.0;
    let policy = CpuPolicy {
        period_ms: 100,
        poll_above,
        block_below: poll_above * f64::from(input.u8()) / 256.0,
        block_after_periods: input.below(12) as u32,
        self_poll_batch: u32::from(input.u8() & 0x1f),
        slice_us: if input.bool() { 500 } else { 0 },
        step_window_ms: if input.bool() { 10 } else { 0 },
        step_above: f64::from(1 + u32::from(input.u8())) / 256.0,
        step_windows: 1 + input.below(4) as u32,
    };
    assert_eq!(policy.check(), Ok(()), "{policy:?}");
    policy
}

/// What a hostile (or honest) dataplane publishes next for a core that published `last`: a thread id of
/// the made-up host or any other number, counters that grow, go back or jump anywhere.
fn hostile_sample(input: &mut FuzzInput<'_>, last: &CoreSample) -> CoreSample {
    let choice = input.u8();
    let thread_id = match choice & 0x0f {
        0..=9 => u64::from(choice & 0x0f),
        10 | 11 => last.thread_id,
        _ => u64::from(input.u32()) << (choice >> 4),
    };
    let counter = |input: &mut FuzzInput<'_>, last: u64| match input.below(4) {
        0 => last,
        1 => last.wrapping_add(u64::from(input.u32())),
        2 => last.wrapping_sub(u64::from(input.u16())),
        _ => u64::from(input.u32()) << 32 | u64::from(input.u32()),
    };
    let busy_ns = counter(input, last.busy_ns);
    let self_polls = counter(input, last.self_polls);
    CoreSample {
        thread_id,
        mode_in_effect: if input.bool() { CoreMode::BusyPoll } else { CoreMode::Block },
        rounds: last.rounds.wrapping_add(1),
        busy_ns,
        self_polls,
        ..*last
    }
}

fn tenant_view<'a>(
    boards: &'a [CoreBoard],
    cores: &'a mut [Vec<ManagedCore>],
    shares: &[u16],
    pid: impl Fn(usize) -> i32,
) -> Vec<Tenant<'a>> {
    cores
        .iter_mut()
        .enumerate()
        .map(|(t, cores)| Tenant { pid: pid(t), share: shares[t], board: &boards[t], cores })
        .collect()
}

fn held_per_tenant(cores: &[Vec<ManagedCore>]) -> Vec<usize> {
    cores.iter().map(|cores| cores.iter().filter(|c| c.cpu().is_some()).count()).collect()
}

/// What holds after every step, and every placement made in it.
fn check(
    allocation: &Allocation<'_>,
    boards: &[CoreBoard],
    cores: &[Vec<ManagedCore>],
    host: &mut HostTable,
    pid: impl Fn(usize) -> i32,
) {
    let mut held = Vec::new();
    for (t, tenant_cores) in cores.iter().enumerate() {
        for (index, core) in tenant_cores.iter().enumerate() {
            if let Some(cpu) = core.cpu() {
                assert!(
                    allocation.polling.contains(&cpu),
                    "tenant {t} core {index} holds CPU {cpu}, not a polling one"
                );
                assert!(!held.contains(&cpu), "CPU {cpu} is held twice");
                assert!(core.thread().is_some(), "tenant {t} core {index} holds CPU {cpu} with no thread");
                held.push(cpu);
            }
            assert_eq!(core.cpu().is_some(), core.mode() == CoreMode::BusyPoll, "tenant {t} core {index}: {core:?}");
            assert_eq!(
                boards[t].asked_mode(index),
                core.mode(),
                "tenant {t} core {index}: board word and decision differ"
            );
            assert!((0.0..=1.0).contains(&core.load()), "tenant {t} core {index}: load {}", core.load());
            assert!(core.entry(index).load_permille <= 1000);
        }
    }
    for (tid, cpus) in std::mem::take(&mut host.placed) {
        let owner = host.owner(tid);
        let tenant = (0..cores.len()).find(|&t| Some(pid(t)) == owner);
        let Some(tenant) = tenant else {
            panic!("thread {tid} moved to {cpus:?}; its owner is {owner:?}, no dataplane")
        };
        let its_cores: Vec<&ManagedCore> = cores[tenant].iter().filter(|c| c.thread() == Some(tid)).collect();
        assert!(!its_cores.is_empty(), "thread {tid} of tenant {tenant} moved, but none of its cores has it");
        let to_shared = cpus == allocation.shared && its_cores.iter().any(|c| c.mode() == CoreMode::Block);
        let to_polling = matches!(cpus[..], [cpu] if its_cores.iter().any(|c| c.cpu() == Some(cpu)));
        assert!(
            to_shared || to_polling,
            "thread {tid} moved to {cpus:?}, where none of its cores was sent: {its_cores:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks one step in which thread 5, owned by `owner`, was moved to polling CPU 2, with one dataplane
    /// (pid 100) whose only core has no thread.
    fn check_a_move_of_thread_5(owner: i32) {
        let policy = CpuPolicy::default();
        let allocation = Allocation { policy: &policy, polling: &[2], shared: &[0] };
        let mut host = HostTable { owner: [None; TIDS], placed: vec![(5, vec![2])] };
        host.owner[5] = Some(owner);
        let boards = [CoreBoard::create(1).unwrap()];
        check(&allocation, &boards, &[vec![ManagedCore::default()]], &mut host, |t| 100 + t as i32);
    }

    #[test]
    #[should_panic(expected = "no dataplane")]
    fn a_move_of_another_process_thread_is_caught() {
        check_a_move_of_thread_5(FOREIGN_PID);
    }

    #[test]
    #[should_panic(expected = "none of its cores")]
    fn a_move_no_core_asked_for_is_caught() {
        check_a_move_of_thread_5(100);
    }

    /// The corpus (seeds and what the fuzzer kept) drives the allocation through each of its moves, not only
    /// through inputs where nothing happens.
    #[test]
    fn the_corpus_reaches_every_kind_of_move() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ixcp_allocation");
        let mut total = DaemonStats::default();
        for entry in std::fs::read_dir(&dir).expect("the ixcp_allocation corpus") {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            let stats = BOARDS.with(|boards| run_allocation(boards, &mut FuzzInput::new(&data)));
            total.to_polling += stats.to_polling;
            total.to_blocking += stats.to_blocking;
            total.threads_refused += stats.threads_refused;
            total.self_polls_kept += stats.self_polls_kept;
            total.self_polls_ended += stats.self_polls_ended;
        }
        assert!(total.to_polling > 0 && total.to_blocking > 0, "{total:?}");
        assert!(total.threads_refused > 0 && total.self_polls_kept + total.self_polls_ended > 0, "{total:?}");
    }
}
