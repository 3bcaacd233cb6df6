//! The `stats` replies: memcached 1.6.18's field names in its order, as it
//! prints them when run as this server is (flat LRU, no crawler, no slab
//! mover, no dumps). Fields for machinery this server does not have carry
//! the value that is true here, mostly 0 (`docs/kv.md` lists them).

use std::cell::RefCell;
use std::fmt::Display;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::{PROTOCOL_VERSION, line};
use crate::protocol::StatsGroup;
use crate::server::Server;
use crate::stats::Counter;
use crate::store::GROWTH_FACTOR;

/// Linux's `USER_HZ`, the unit of the CPU times in `/proc/self/stat`.
const PROC_TICKS_PER_SEC: u64 = 100;
/// memcached's default minimum item payload (`-n`), reported as `chunk_size`.
const CHUNK_MIN_PAYLOAD_BYTES: usize = 48;

fn stat(out: &mut BytesMut, name: impl Display, value: impl Display) {
    use std::fmt::Write;
    let mut text = String::with_capacity(48);
    let _ = write!(text, "STAT {name} {value}\r\n");
    out.put_slice(text.as_bytes());
}

fn yes_no(on: bool) -> &'static str {
    if on { "yes" } else { "no" }
}

/// Appends the reply to `stats [group]`.
pub(super) fn reply(server: &Server, group: StatsGroup, out: &mut BytesMut) {
    match group {
        StatsGroup::Reset => {
            server.counters().reset();
            server.store().reset_stats();
            line(out, "RESET");
            return;
        }
        StatsGroup::General => general(server, out),
        StatsGroup::Settings => settings(server, out),
        StatsGroup::Items => items(server, out),
        StatsGroup::Slabs => slabs(server, out),
        StatsGroup::Sizes => stat(out, "sizes_status", "disabled"),
        StatsGroup::Conns => conns(server, out),
        StatsGroup::DetailDump => {}
    }
    line(out, "END");
}

/// How long a reading of `/proc/self/stat` serves `stats` replies: its CPU
/// times move in steps of one `USER_HZ` tick (10 ms), so a fresher reading
/// could not differ. Without it every `stats` command (7 bytes from any
/// client) cost the core a file read and parse, about 20 us.
const CPU_TIMES_REFRESH: Duration = Duration::from_millis(10);

/// The last reading of this process's CPU times, per thread (each core
/// answers its own connections).
struct CpuTimesCache {
    read_at: Option<Instant>,
    ticks: (u64, u64),
}

impl CpuTimesCache {
    /// User and system ticks as of `now`, from `read` when the last reading
    /// is [`CPU_TIMES_REFRESH`] old or more (or there is none).
    fn get(&mut self, now: Instant, read: impl FnOnce() -> (u64, u64)) -> (u64, u64) {
        if self.read_at.is_none_or(|at| now.saturating_duration_since(at) >= CPU_TIMES_REFRESH) {
            self.ticks = read();
            self.read_at = Some(now);
        }
        self.ticks
    }
}

thread_local! {
    static CPU_TIMES: RefCell<CpuTimesCache> = const { RefCell::new(CpuTimesCache { read_at: None, ticks: (0, 0) }) };
}

/// User and system CPU ticks of this process, from `/proc/self/stat` (zero
/// where that file is not readable).
fn read_cpu_ticks() -> (u64, u64) {
    parse_cpu_ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// utime and stime of a `/proc/PID/stat` line: the 12th and 13th fields after
/// the parenthesised command name (which may hold spaces and parentheses).
fn parse_cpu_ticks(stat: &str) -> (u64, u64) {
    let mut fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().skip(11);
    let mut ticks = || fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let user = ticks();
    (user, ticks())
}

/// User and system CPU seconds of this process, as memcached prints them.
fn cpu_times() -> (String, String) {
    let (user, system) = CPU_TIMES.with_borrow_mut(|cache| cache.get(Instant::now(), read_cpu_ticks));
    let seconds = |ticks: u64| {
        format!("{}.{:06}", ticks / PROC_TICKS_PER_SEC, ticks % PROC_TICKS_PER_SEC * (1_000_000 / PROC_TICKS_PER_SEC))
    };
    (seconds(user), seconds(system))
}

fn general(server: &Server, out: &mut BytesMut) {
    let counters = server.counters();
    let store = server.store();
    let now = store.clock().now();
    let totals = store.stats();
    let (user, system) = cpu_times();
    let connections = server.current_connections();
    let hash = store.hash_table_stats();
    stat(out, "pid", std::process::id());
    stat(out, "uptime", now);
    stat(out, "time", store.clock().unix_time(now));
    stat(out, "version", PROTOCOL_VERSION);
    stat(out, "libevent", "none");
    stat(out, "pointer_size", usize::BITS);
    stat(out, "rusage_user", user);
    stat(out, "rusage_system", system);
    stat(out, "max_connections", server.settings().max_connections);
    stat(out, "curr_connections", connections);
    stat(out, "total_connections", counters.get(Counter::TotalConnections));
    stat(out, "rejected_connections", counters.get(Counter::RejectedConnections));
    stat(out, "connection_structures", connections);
    for name in ["response_obj_oom", "response_obj_count", "response_obj_bytes", "read_buf_count"] {
        stat(out, name, 0);
    }
    for name in ["read_buf_bytes", "read_buf_bytes_free", "read_buf_oom", "reserved_fds"] {
        stat(out, name, 0);
    }
    for (name, counter) in [
        ("cmd_get", Counter::CmdGet),
        ("cmd_set", Counter::CmdSet),
        ("cmd_flush", Counter::CmdFlush),
        ("cmd_touch", Counter::CmdTouch),
        ("cmd_meta", Counter::CmdMeta),
        ("get_hits", Counter::GetHits),
        ("get_misses", Counter::GetMisses),
    ] {
        stat(out, name, counters.get(counter));
    }
    stat(out, "get_expired", totals.get_expired);
    stat(out, "get_flushed", totals.get_flushed);
    for (name, counter) in [
        ("delete_misses", Counter::DeleteMisses),
        ("delete_hits", Counter::DeleteHits),
        ("incr_misses", Counter::IncrMisses),
        ("incr_hits", Counter::IncrHits),
        ("decr_misses", Counter::DecrMisses),
        ("decr_hits", Counter::DecrHits),
        ("cas_misses", Counter::CasMisses),
        ("cas_hits", Counter::CasHits),
        ("cas_badval", Counter::CasBadval),
        ("touch_hits", Counter::TouchHits),
        ("touch_misses", Counter::TouchMisses),
        ("store_too_large", Counter::StoreTooLarge),
        ("store_no_memory", Counter::StoreNoMemory),
    ] {
        stat(out, name, counters.get(counter));
    }
    stat(out, "auth_cmds", 0);
    stat(out, "auth_errors", 0);
    stat(out, "bytes_read", counters.get(Counter::BytesRead));
    stat(out, "bytes_written", counters.get(Counter::BytesWritten));
    stat(out, "limit_maxbytes", store.memory_limit_bytes());
    stat(out, "accepting_conns", 1);
    stat(out, "listen_disabled_num", 0);
    stat(out, "time_in_listen_disabled_us", 0);
    stat(out, "threads", server.settings().threads);
    stat(out, "conn_yields", 0);
    stat(out, "hash_power_level", hash.buckets.max(1).ilog2());
    stat(out, "hash_bytes", hash.bytes);
    stat(out, "hash_is_expanding", 0);
    for name in ["malloc_fails", "log_worker_dropped", "log_worker_written", "log_watcher_skipped"] {
        stat(out, name, 0);
    }
    for name in ["log_watcher_sent", "log_watchers", "unexpected_napi_ids", "round_robin_fallback"] {
        stat(out, name, 0);
    }
    stat(out, "bytes", totals.bytes);
    stat(out, "curr_items", totals.curr_items);
    stat(out, "total_items", totals.total_items);
    stat(out, "slab_global_page_pool", 0);
    stat(out, "expired_unfetched", totals.expired_unfetched);
    stat(out, "evicted_unfetched", totals.evicted_unfetched);
    stat(out, "evictions", totals.evictions);
    stat(out, "reclaimed", totals.reclaimed);
    for name in ["crawler_reclaimed", "crawler_items_checked", "lrutail_reflocked"] {
        stat(out, name, 0);
    }
}

fn settings(server: &Server, out: &mut BytesMut) {
    let store = server.store();
    let config = store.config();
    let settings = server.settings();
    let tunables = server.tunables();
    stat(out, "maxbytes", store.memory_limit_bytes());
    stat(out, "maxconns", settings.max_connections);
    stat(out, "tcpport", settings.port);
    stat(out, "udpport", 0);
    stat(out, "inter", settings.listen_ip.map_or("NULL".to_string(), |ip| ip.to_string()));
    stat(out, "verbosity", tunables.verbosity);
    stat(out, "oldest", store.oldest_live());
    stat(out, "evictions", "on");
    stat(out, "domain_socket", "NULL");
    stat(out, "umask", 700);
    stat(out, "shutdown_command", "no");
    stat(out, "growth_factor", format!("{GROWTH_FACTOR:.2}"));
    stat(out, "chunk_size", CHUNK_MIN_PAYLOAD_BYTES);
    stat(out, "num_threads", settings.threads);
    stat(out, "num_threads_per_udp", settings.threads);
    stat(out, "stat_key_prefix", ":");
    stat(out, "detail_enabled", "no");
    // Every complete command of a read is run before the next read.
    stat(out, "reqs_per_event", 0);
    stat(out, "cas_enabled", "yes");
    stat(out, "tcp_backlog", 1024);
    stat(out, "binding_protocol", "ascii");
    stat(out, "auth_enabled_sasl", "no");
    stat(out, "auth_enabled_ascii", "no");
    stat(out, "item_size_max", config.item_size_max);
    stat(out, "maxconns_fast", "yes");
    stat(out, "hashpower_init", 0);
    stat(out, "slab_reassign", "no");
    stat(out, "slab_automove", tunables.slab_automove);
    stat(out, "slab_automove_ratio", format!("{:.2}", tunables.slab_automove_ratio));
    stat(out, "slab_automove_window", 30);
    stat(out, "slab_chunk_max", config.item_size_max / 2);
    stat(out, "lru_crawler", "no");
    stat(out, "lru_crawler_sleep", tunables.lru_crawler_sleep);
    stat(out, "lru_crawler_tocrawl", tunables.lru_crawler_tocrawl);
    stat(out, "tail_repair_time", 0);
    stat(out, "flush_enabled", "yes");
    stat(out, "dump_enabled", "no");
    stat(out, "hash_algorithm", "foldhash");
    stat(out, "lru_maintainer_thread", "no");
    stat(out, "lru_segmented", "no");
    stat(out, "hot_lru_pct", tunables.hot_lru_pct);
    stat(out, "warm_lru_pct", tunables.warm_lru_pct);
    stat(out, "hot_max_factor", format!("{:.2}", tunables.hot_max_factor));
    stat(out, "warm_max_factor", format!("{:.2}", tunables.warm_max_factor));
    stat(out, "temp_lru", "no");
    stat(out, "temporary_ttl", 61);
    stat(out, "idle_timeout", 0);
    stat(out, "watcher_logbuf_size", 0);
    stat(out, "worker_logbuf_size", 0);
    stat(out, "read_buf_mem_limit", 0);
    stat(out, "track_sizes", yes_no(false));
    stat(out, "inline_ascii_response", "no");
    // The external storage and TLS settings, as memcached reports them with
    // neither configured: this server has neither.
    for (name, value) in [
        ("ext_item_size", "512"),
        ("ext_item_age", "4294967295"),
        ("ext_low_ttl", "0"),
        ("ext_recache_rate", "2000"),
        ("ext_wbuf_size", "4194304"),
        ("ext_compact_under", "0"),
        ("ext_drop_under", "0"),
        ("ext_max_sleep", "1000000"),
        ("ext_max_frag", "0.80"),
        ("slab_automove_freeratio", "0.010"),
        ("ext_drop_unread", "no"),
        ("ssl_enabled", "no"),
        ("ssl_chain_cert", "(null)"),
        ("ssl_key", "(null)"),
        ("ssl_verify_mode", "0"),
        ("ssl_keyformat", "1"),
        ("ssl_ciphers", "NULL"),
        ("ssl_ca_cert", "NULL"),
        ("ssl_wbuf_size", "16384"),
        ("ssl_session_cache", "no"),
        ("ssl_kernel_tls", "no"),
        ("ssl_min_version", "tlsv1.2"),
        ("num_napi_ids", "(null)"),
        ("memory_file", "(null)"),
    ] {
        stat(out, name, value);
    }
}

/// Per size class, for the classes that hold items: memcached's flat-LRU
/// field set.
fn items(server: &Server, out: &mut BytesMut) {
    let now = server.store().clock().now();
    for (class, c) in server.store().class_stats().iter().enumerate().filter(|(_, c)| c.number > 0) {
        let age = if c.oldest_access == 0 { 0 } else { now.saturating_sub(c.oldest_access) };
        for (name, value) in [
            ("number", c.number),
            ("age", u64::from(age)),
            ("mem_requested", c.mem_requested),
            ("evicted", c.evicted),
            ("evicted_nonzero", c.evicted_nonzero),
            ("evicted_time", c.evicted_time),
            ("outofmemory", c.outofmemory),
            ("tailrepairs", 0),
            ("reclaimed", c.reclaimed),
            ("expired_unfetched", c.expired_unfetched),
            ("evicted_unfetched", c.evicted_unfetched),
            ("crawler_reclaimed", 0),
            ("crawler_items_checked", 0),
            ("lrutail_reflocked", 0),
        ] {
            stat(out, format_args!("items:{class}:{name}"), value);
        }
    }
}

/// Per size class that ever held an item (as memcached lists the classes it
/// gave pages to): memcached's chunk geometry, then the items held and the
/// commands counted per class. This store allocates per item, not in pages:
/// it reports no pages and no free chunks.
fn slabs(server: &Server, out: &mut BytesMut) {
    let classes = server.store().size_classes();
    let stats = server.store().class_stats();
    let mut active = 0;
    for (class, c) in stats.iter().enumerate().filter(|(_, c)| c.used) {
        active += 1;
        for (name, value) in [
            ("chunk_size", classes.chunk_size(class) as u64),
            ("chunks_per_page", classes.chunks_per_page(class) as u64),
            ("total_pages", 0),
            ("total_chunks", 0),
            ("used_chunks", c.number),
            ("free_chunks", 0),
            ("free_chunks_end", 0),
            ("get_hits", c.get_hits),
            ("cmd_set", c.cmd_set),
            ("delete_hits", c.delete_hits),
            ("incr_hits", c.incr_hits),
            ("decr_hits", c.decr_hits),
            ("cas_hits", c.cas_hits),
            ("cas_badval", c.cas_badval),
            ("touch_hits", c.touch_hits),
        ] {
            stat(out, format_args!("{class}:{name}"), value);
        }
    }
    stat(out, "active_slabs", active);
    stat(out, "total_malloced", server.store().stats().bytes);
}

/// The listeners (one per core, ids from 0) and the open connections.
fn conns(server: &Server, out: &mut BytesMut) {
    let settings = server.settings();
    let now = server.store().clock().now();
    let ip = settings.listen_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string());
    for core in 0..settings.threads {
        stat(out, format_args!("{core}:addr"), format_args!("tcp:{ip}:{}", settings.port));
        stat(out, format_args!("{core}:state"), "conn_listening");
        stat(out, format_args!("{core}:secs_since_last_cmd"), now);
    }
    for (id, entry) in server.connection_entries() {
        if let Some(addrs) = entry.addrs {
            stat(out, format_args!("{id}:addr"), format_args!("tcp:{}", addrs.peer));
            stat(out, format_args!("{id}:listen_addr"), format_args!("tcp:{}", addrs.local));
        }
        stat(out, format_args!("{id}:state"), entry.state());
        stat(out, format_args!("{id}:secs_since_last_cmd"), now.saturating_sub(entry.last_command()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_are_read_again_only_after_a_tick() {
        let mut cache = CpuTimesCache { read_at: None, ticks: (0, 0) };
        let start = Instant::now();
        let reads = std::cell::Cell::new(0);
        let reader = |ticks| {
            let reads = &reads;
            move || {
                reads.set(reads.get() + 1);
                ticks
            }
        };
        assert_eq!(cache.get(start, reader((1, 2))), (1, 2), "the first call reads");
        assert_eq!(cache.get(start + Duration::from_millis(9), reader((3, 4))), (1, 2), "within a tick: kept");
        assert_eq!(reads.get(), 1);
        assert_eq!(cache.get(start + CPU_TIMES_REFRESH, reader((5, 6))), (5, 6), "a tick later: read again");
        assert_eq!(reads.get(), 2);
    }

    #[test]
    fn cpu_ticks_are_fields_14_and_15_whatever_the_command_name() {
        let line = "4242 (ix kv) (x)) R 1 4242 4242 0 -1 4194560 4000 0 0 0 1234 567 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_cpu_ticks(line), (1234, 567));
        assert_eq!(parse_cpu_ticks("garbage"), (0, 0));
        assert_eq!(parse_cpu_ticks("1 (a) R 1 2"), (0, 0), "a short line: zero, no panic");
    }

    #[test]
    fn this_process_s_cpu_ticks_are_read() {
        // Ticks accrue at 100 Hz by sampling: spin on the read until one lands (a bound only for a broken read).
        let deadline = Instant::now() + Duration::from_secs(30);
        while read_cpu_ticks() == (0, 0) && Instant::now() < deadline {}
        assert_ne!(read_cpu_ticks(), (0, 0), "30 s of reading /proc/self/stat showed no CPU tick");
    }
}
