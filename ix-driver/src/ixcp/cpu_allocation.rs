//! Which dataplane core polls on which CPU: each period's decision and the
//! step rule's short windows over every admitted dataplane. It is kept apart
//! from the daemon's sockets and maps, behind [`Threads`] for what it does to
//! the host's threads, so that tests and the `ixcp_allocation` fuzz target
//! can drive it with hostile core boards and a made-up thread table.
//!
//! What it keeps true, whatever the boards say (the fuzz target checks each
//! after every step):
//! - a polling CPU is held by one core at most, and only CPUs of the
//!   configured polling set are held;
//! - after a period's decision, a dataplane's cores hold no more polling CPUs
//!   than its share, and the step rule never gives one beyond it;
//! - a core holds a polling CPU exactly when it is asked to busy-poll, and its
//!   board's mode word says what was decided;
//! - a thread is moved only while it is a thread of the dataplane's process:
//!   ownership is checked when a board names the thread and again before every
//!   move, since a thread that exited leaves its id free for another process.

use std::time::Duration;

use super::core_board::{CoreBoard, CoreMode, CoreSample};
use super::cpu_policy::{CoreState, CpuPolicy, StepWatch, core_load, decide, starting_state, stepped_state};
use super::protocol::{CoreEntry, DaemonStats};
use super::thread_placement::{is_thread_of, move_thread, set_slice};

/// What the allocation does to the host's threads.
pub trait Threads {
    /// Whether thread `tid` is now a thread of process `pid`.
    fn is_thread_of(&mut self, pid: i32, tid: u64) -> bool;
    /// Lets thread `tid` run on `cpus` only, with `slice` as its scheduler
    /// slice if one is given; a failure is the implementation's to report.
    fn place(&mut self, tid: u64, cpus: &[usize], slice: Option<Duration>);
}

/// The host's threads: `/proc` for ownership, `sched_setaffinity` and
/// `sched_setattr` for placement, failures logged (a thread that is gone is
/// released with its dataplane when its connection closes).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostThreads;

impl Threads for HostThreads {
    fn is_thread_of(&mut self, pid: i32, tid: u64) -> bool {
        is_thread_of(pid, tid)
    }

    fn place(&mut self, tid: u64, cpus: &[usize], slice: Option<Duration>) {
        if let Err(error) = move_thread(tid, cpus) {
            tracing::debug!(tid, ?cpus, %error, "ixcp: a core's thread could not be moved");
        }
        if let Some(Err(error)) = slice.map(|slice| set_slice(tid, slice)) {
            tracing::debug!(tid, ?slice, %error, "ixcp: a core's thread's slice was not set");
        }
    }
}

/// What `ixcp` knows of one dataplane core between decisions.
#[derive(Debug, Clone, Default)]
pub struct ManagedCore {
    state: CoreState,
    /// The polling CPU it holds.
    cpu: Option<usize>,
    /// The thread id its board names, and that thread, checked to be one of
    /// the dataplane's when named and before each move.
    named_thread: u64,
    thread: Option<u64>,
    last: CoreSample,
    load: f64,
    /// Its counters at the last short window of the step rule, and the
    /// rule's count of busy windows.
    step_last: CoreSample,
    step: StepWatch,
    to_polling: u64,
    to_blocking: u64,
    /// The core's self-poll count `ixcp` answered last.
    self_polls_answered: u64,
    /// Of its switches to polling on its own, those a decision kept (giving
    /// it a polling CPU) and those it sent back to blocking.
    self_polls_kept: u64,
    self_polls_ended: u64,
}

impl ManagedCore {
    /// The mode `ixcp` asks of the core.
    pub fn mode(&self) -> CoreMode {
        self.state.mode
    }

    /// The polling CPU the core holds.
    pub fn cpu(&self) -> Option<usize> {
        self.cpu
    }

    /// The core's thread, if its board names one of the dataplane's threads.
    pub fn thread(&self) -> Option<u64> {
        self.thread
    }

    /// The core's load over the last period (0 to 1).
    pub fn load(&self) -> f64 {
        self.load
    }

    /// The core as the operator's listing shows it, as core `index`.
    pub fn entry(&self, index: usize) -> CoreEntry {
        CoreEntry {
            core: u16::try_from(index).unwrap_or(u16::MAX),
            mode: self.state.mode,
            cpu: self.cpu.map(|cpu| u16::try_from(cpu).unwrap_or(u16::MAX)),
            load_permille: (self.load * 1000.0).round() as u16,
            sample: self.last,
            to_polling: self.to_polling,
            to_blocking: self.to_blocking,
            self_polls_kept: self.self_polls_kept,
            self_polls_ended: self.self_polls_ended,
        }
    }

    /// Forgets the core's thread and sends it back to blocking without a
    /// CPU: its board named a thread that is not, or no longer, one of the
    /// dataplane's. Counted in `threads_refused`.
    fn disown(&mut self, board: &CoreBoard, index: usize, held: &mut Vec<usize>, stats: &mut DaemonStats) {
        if let Some(tid) = self.thread.take() {
            tracing::warn!(tid, "ixcp: a core's thread is no longer the dataplane's; not moved");
        }
        stats.threads_refused += 1;
        self.state = CoreState::default();
        self.step.reset();
        if let Some(cpu) = self.cpu.take() {
            held.retain(|&c| c != cpu);
        }
        board.ask_mode(index, CoreMode::Block);
    }
}

/// One admitted dataplane as the allocation sees it.
#[derive(Debug)]
pub struct Tenant<'a> {
    /// The dataplane's process (the peer of its connection), whose threads
    /// alone may be moved.
    pub pid: i32,
    /// Polling CPUs its cores may hold at once.
    pub share: u16,
    /// Its board, with a slot for each of `cores` at least.
    pub board: &'a CoreBoard,
    /// Its cores.
    pub cores: &'a mut [ManagedCore],
}

/// The policy and the CPUs the allocation works with.
#[derive(Debug, Clone, Copy)]
pub struct Allocation<'a> {
    /// The thresholds of the decisions.
    pub policy: &'a CpuPolicy,
    /// CPUs a core may be given to busy-poll on, one core each.
    pub polling: &'a [usize],
    /// Where blocking cores run.
    pub shared: &'a [usize],
}

impl Allocation<'_> {
    /// One period's decision for every core of every tenant over `wall`:
    /// reads its counters, computes its load, and moves it between blocking
    /// on the shared CPUs and polling on a CPU of its own.
    ///
    /// # Panics
    /// When a tenant's board has fewer slots than it has cores.
    pub fn decide(
        &self,
        tenants: &mut [Tenant<'_>],
        wall: Duration,
        threads: &mut impl Threads,
        stats: &mut DaemonStats,
    ) {
        let policy = self.policy;
        let mut held = held_cpus(tenants);
        for tenant in tenants.iter_mut() {
            let (pid, board) = (tenant.pid, tenant.board);
            for index in 0..tenant.cores.len() {
                let sample = board.read(index);
                let polling_elsewhere = polling_elsewhere(tenant.cores, index);
                let core = &mut tenant.cores[index];
                core.load = core_load(&core.last, &sample, wall);
                core.last = sample;
                if core.named_thread != sample.thread_id {
                    core.named_thread = sample.thread_id;
                    core.thread = threads.is_thread_of(pid, sample.thread_id).then_some(sample.thread_id);
                    if core.thread.is_none() && sample.thread_id != 0 {
                        stats.threads_refused += 1;
                        tracing::warn!(
                            pid,
                            tid = sample.thread_id,
                            "ixcp: a core board names a thread not the dataplane's"
                        );
                    }
                    // A new thread starts blocking on the shared CPUs; what it
                    // counted so far is answered.
                    core.state = CoreState::default();
                    core.step.reset();
                    if let Some(cpu) = core.cpu.take() {
                        held.retain(|&c| c != cpu);
                    }
                    board.ask_mode(index, CoreMode::Block);
                    board.answer_self_polls(index, sample.self_polls);
                    core.self_polls_answered = sample.self_polls;
                    if let Some(tid) = core.thread {
                        threads.place(tid, self.shared, policy.slice());
                    }
                    // Its counters so far are not one period's: decide from the next.
                    core.load = 0.0;
                    continue;
                }
                let free_cpu = self.free_cpu(&held);
                let may_poll = core.thread.is_some()
                    && polling_elsewhere < usize::from(tenant.share)
                    && (core.cpu.is_some() || free_cpu.is_some());
                // A core that switched itself to polling since the last
                // decision enters it as polling (see `starting_state`); the
                // answer goes after the mode word, whatever the decision.
                let switched_itself = sample.self_polls != core.self_polls_answered;
                let mut next = decide(policy, starting_state(policy, core.state, switched_itself), core.load, may_poll);
                if switched_itself && core.state.mode == CoreMode::Block {
                    let kept = next.mode == CoreMode::BusyPoll;
                    let (mine, total) = if kept {
                        (&mut core.self_polls_kept, &mut stats.self_polls_kept)
                    } else {
                        (&mut core.self_polls_ended, &mut stats.self_polls_ended)
                    };
                    *mine += 1;
                    *total += 1;
                    tracing::debug!(
                        pid,
                        core = index,
                        load = core.load,
                        kept,
                        "ixcp: a core switched itself to polling"
                    );
                }
                if next.mode != core.state.mode && core.thread.is_some() {
                    let own = core.thread.filter(|&tid| threads.is_thread_of(pid, tid));
                    match (next.mode, own) {
                        (CoreMode::BusyPoll, Some(tid)) => {
                            let cpu = free_cpu.expect("may_poll checked a free CPU");
                            give_polling_cpu(core, board, index, tid, cpu, policy, threads, stats);
                            held.push(cpu);
                        }
                        (CoreMode::Block, own) => {
                            board.ask_mode(index, CoreMode::Block);
                            if let Some(cpu) = core.cpu.take() {
                                held.retain(|&c| c != cpu);
                            }
                            core.to_blocking += 1;
                            stats.to_blocking += 1;
                            match own {
                                Some(tid) => threads.place(tid, self.shared, policy.slice()),
                                None => core.disown(board, index, &mut held, stats),
                            }
                        }
                        (CoreMode::BusyPoll, None) => {
                            core.disown(board, index, &mut held, stats);
                            next = CoreState::default();
                        }
                    }
                    tracing::debug!(pid, core = index, load = core.load, mode = ?next.mode, cpu = ?core.cpu, "ixcp: core moved");
                }
                core.state = next;
                if switched_itself {
                    board.answer_self_polls(index, sample.self_polls);
                    core.self_polls_answered = sample.self_polls;
                }
            }
            // Its cores may switch themselves to polling only while one of
            // them could be given a polling CPU.
            let cpu_for_it = tenant.cores.iter().any(|c| c.cpu.is_some()) || self.free_cpu(&held).is_some();
            let may_poll = tenant.share > 0 && cpu_for_it;
            board.set_self_poll_rule(policy.self_poll_rule(may_poll));
        }
    }

    /// One short window of the step rule (see [`StepWatch`]) over `wall`:
    /// reads every core's counters, and gives a blocking core whose windows
    /// make a step a polling CPU at once, if it may poll, as a decision
    /// would. The period's decisions go on as before and judge it at the next
    /// one (see [`stepped_state`]).
    ///
    /// # Panics
    /// When a tenant's board has fewer slots than it has cores.
    pub fn watch_for_steps(
        &self,
        tenants: &mut [Tenant<'_>],
        wall: Duration,
        threads: &mut impl Threads,
        stats: &mut DaemonStats,
    ) {
        let policy = self.policy;
        let mut held = held_cpus(tenants);
        for tenant in tenants.iter_mut() {
            let (pid, board) = (tenant.pid, tenant.board);
            for index in 0..tenant.cores.len() {
                let sample = board.read(index);
                let share_left = polling_elsewhere(tenant.cores, index) < usize::from(tenant.share);
                let core = &mut tenant.cores[index];
                let load = core_load(&core.step_last, &sample, wall);
                core.step_last = sample;
                // Only a blocking core of a thread the period's decision
                // checked; a new thread waits for that decision.
                let checked =
                    core.thread.filter(|_| core.state.mode == CoreMode::Block && core.named_thread == sample.thread_id);
                if checked.is_none() {
                    core.step.reset();
                    continue;
                }
                if !core.step.observe(policy, load) {
                    continue;
                }
                let Some(cpu) = self.free_cpu(&held).filter(|_| share_left) else {
                    continue;
                };
                let Some(tid) = checked.filter(|&tid| threads.is_thread_of(pid, tid)) else {
                    core.disown(board, index, &mut held, stats);
                    continue;
                };
                give_polling_cpu(core, board, index, tid, cpu, policy, threads, stats);
                held.push(cpu);
                core.state = stepped_state(policy);
                tracing::debug!(pid, core = index, load, mode = ?core.state.mode, cpu = ?core.cpu, "ixcp: core moved by a step");
            }
        }
    }

    /// The first polling CPU no core holds.
    fn free_cpu(&self, held: &[usize]) -> Option<usize> {
        self.polling.iter().copied().find(|cpu| !held.contains(cpu))
    }
}

/// The polling CPUs the tenants' cores hold.
fn held_cpus(tenants: &[Tenant<'_>]) -> Vec<usize> {
    tenants.iter().flat_map(|t| t.cores.iter()).filter_map(|c| c.cpu).collect()
}

/// How many of `cores` other than `index` hold a polling CPU.
fn polling_elsewhere(cores: &[ManagedCore], index: usize) -> usize {
    cores.iter().enumerate().filter(|(i, c)| *i != index && c.cpu.is_some()).count()
}

/// Moves a blocking core, whose thread `tid` was just checked, to polling on
/// `cpu`: the thread there first, then the mode asked; counted.
#[allow(clippy::too_many_arguments)] // one call's worth of state from two loops; a struct would only rename it
fn give_polling_cpu(
    core: &mut ManagedCore,
    board: &CoreBoard,
    index: usize,
    tid: u64,
    cpu: usize,
    policy: &CpuPolicy,
    threads: &mut impl Threads,
    stats: &mut DaemonStats,
) {
    threads.place(tid, &[cpu], policy.slice());
    core.cpu = Some(cpu);
    board.ask_mode(index, CoreMode::BusyPoll);
    core.to_polling += 1;
    stats.to_polling += 1;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A thread table the test edits, and every placement made.
    #[derive(Default)]
    struct Table {
        owner: HashMap<u64, i32>,
        placed: Vec<(u64, Vec<usize>)>,
    }

    impl Threads for Table {
        fn is_thread_of(&mut self, pid: i32, tid: u64) -> bool {
            self.owner.get(&tid) == Some(&pid)
        }

        fn place(&mut self, tid: u64, cpus: &[usize], _slice: Option<Duration>) {
            self.placed.push((tid, cpus.to_vec()));
        }
    }

    fn publish(board: &CoreBoard, tid: u64, busy_ns: u64) {
        board.publish(0, &CoreSample { thread_id: tid, busy_ns, ..CoreSample::default() });
    }

    const PERIOD: Duration = Duration::from_millis(100);

    #[test]
    fn a_thread_that_left_the_dataplane_is_never_moved() {
        let policy = CpuPolicy::default();
        let allocation = Allocation { policy: &policy, polling: &[3], shared: &[0, 1] };
        let board = CoreBoard::create(1).unwrap();
        let mut cores = vec![ManagedCore::default()];
        let mut threads = Table::default();
        let mut stats = DaemonStats::default();
        threads.owner.insert(77, 500);
        let run = |threads: &mut Table, cores: &mut Vec<ManagedCore>, stats: &mut DaemonStats| {
            let mut tenants = [Tenant { pid: 500, share: 1, board: &board, cores }];
            allocation.decide(&mut tenants, PERIOD, threads, stats);
        };
        publish(&board, 77, 0);
        run(&mut threads, &mut cores, &mut stats);
        assert_eq!(threads.placed, [(77, vec![0, 1])], "a new thread goes to the shared CPUs");
        // The thread exits and its id goes to another process, while the board
        // keeps naming it and reports a busy period.
        threads.owner.insert(77, 900);
        publish(&board, 77, 100_000_000);
        run(&mut threads, &mut cores, &mut stats);
        assert_eq!(threads.placed.len(), 1, "another process's thread was moved: {:?}", threads.placed);
        assert_eq!((cores[0].mode(), cores[0].cpu(), cores[0].thread()), (CoreMode::Block, None, None));
        assert_eq!(board.asked_mode(0), CoreMode::Block);
        assert_eq!(stats.threads_refused, 1);
        // Named again after the id was someone else's, it is refused for good
        // until the board names a thread of the dataplane.
        publish(&board, 77, 200_000_000);
        run(&mut threads, &mut cores, &mut stats);
        assert_eq!(threads.placed.len(), 1);
        threads.owner.insert(78, 500);
        publish(&board, 78, 200_000_000);
        run(&mut threads, &mut cores, &mut stats);
        publish(&board, 78, 300_000_000);
        run(&mut threads, &mut cores, &mut stats);
        assert_eq!(threads.placed[1..], [(78, vec![0, 1]), (78, vec![3])]);
        assert_eq!((cores[0].mode(), cores[0].cpu()), (CoreMode::BusyPoll, Some(3)));
        assert_eq!(board.asked_mode(0), CoreMode::BusyPoll);
    }

    #[test]
    fn a_polling_thread_that_left_is_released_without_a_move() {
        let policy = CpuPolicy { block_after_periods: 1, ..CpuPolicy::default() };
        let allocation = Allocation { policy: &policy, polling: &[3], shared: &[0] };
        let board = CoreBoard::create(1).unwrap();
        let other_board = CoreBoard::create(1).unwrap();
        let (mut cores, mut other_cores) = (vec![ManagedCore::default()], vec![ManagedCore::default()]);
        let mut threads = Table::default();
        let mut stats = DaemonStats::default();
        threads.owner.extend([(77, 500), (88, 600)]);
        publish(&board, 77, 0);
        publish(&other_board, 88, 0);
        for busy in [0, 100_000_000] {
            publish(&board, 77, busy);
            publish(&other_board, 88, busy);
            let mut tenants = [
                Tenant { pid: 500, share: 1, board: &board, cores: &mut cores },
                Tenant { pid: 600, share: 1, board: &other_board, cores: &mut other_cores },
            ];
            allocation.decide(&mut tenants, PERIOD, &mut threads, &mut stats);
        }
        assert_eq!(cores[0].cpu(), Some(3), "the first tenant's busy core polls");
        assert_eq!(other_cores[0].cpu(), None, "one polling CPU, held already");
        // The polling thread exits (its id is another process's now) and its
        // board reports idle periods: the CPU goes back, the thread is not moved.
        threads.owner.insert(77, 900);
        let before = threads.placed.len();
        publish(&board, 77, 100_000_000);
        publish(&other_board, 88, 200_000_000);
        let mut tenants = [
            Tenant { pid: 500, share: 1, board: &board, cores: &mut cores },
            Tenant { pid: 600, share: 1, board: &other_board, cores: &mut other_cores },
        ];
        allocation.decide(&mut tenants, PERIOD, &mut threads, &mut stats);
        assert!(threads.placed[before..].iter().all(|(tid, _)| *tid == 88), "{:?}", threads.placed);
        assert_eq!((cores[0].mode(), cores[0].cpu(), cores[0].thread()), (CoreMode::Block, None, None));
        assert_eq!(other_cores[0].cpu(), Some(3), "the CPU released went to the busy core still waiting");
        assert_eq!(stats.threads_refused, 1);
    }
}
