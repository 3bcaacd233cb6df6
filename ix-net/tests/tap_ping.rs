//! The kernel pings our stack over a TAP device: ARP answered, echo requests
//! answered, counted in the stack's statistics.

mod tap_support;

use std::process::Command;
use std::time::Duration;

use tap_support::{Loss, NoApp, TapLink};

#[test]
fn kernel_ping_gets_three_replies_from_the_stack() {
    let Some(mut link) = TapLink::open("png", 1) else {
        return;
    };
    let dataplane = link.spawn(NoApp, Loss::NONE, Duration::from_secs(30));
    let target = link.stack_ip.to_string();
    let ping = Command::new("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", "-I", link.name(), &target])
        .output()
        .expect("run ping (package iputils-ping)");
    let outcome = dataplane.finish();
    let stdout = String::from_utf8_lossy(&ping.stdout);
    let report = format!("{stdout}{}\nstack: {:?}", String::from_utf8_lossy(&ping.stderr), outcome.stats);
    assert!(ping.status.success(), "ping failed: {report}");
    assert!(stdout.contains(" 3 received"), "{report}");
    outcome.result.expect("the dataplane ran to the end");
    let (link_stats, ip_stats) = (&outcome.stats.link, &outcome.stats.ip);
    assert!(link_stats.arp_requests_in >= 1 && link_stats.arp_replies_out >= 1, "{report}");
    assert!(ip_stats.icmp_in_echos >= 3 && ip_stats.icmp_out_echo_reps >= 3, "{report}");
    assert_eq!(ip_stats.in_csum_errors + ip_stats.icmp_in_errors, 0, "{report}");
}
