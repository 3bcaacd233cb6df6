//! Hand-over between dataplane cores: frames of another core's connection
//! (a NIC that cannot steer put them on the wrong queue) are copied to the
//! owner and processed there.

use ix_driver::PacketBuf;

use crate::core::{CoreNet, with_core};
use crate::executor::{Executor, SpawnError};
use crate::stats::LoopStats;

/// Sends the frames of other cores' connections to their owners: copied
/// (pool frames belong to one core), one remote task per owner per round,
/// which re-ingresses them on the owner's stack.
pub(crate) fn hand_over(handover: &mut Vec<(usize, PacketBuf)>, executor: &Executor, stats: &mut LoopStats) {
    handover.sort_unstable_by_key(|(owner, _)| *owner);
    while let Some(&(owner, _)) = handover.first() {
        let split = handover.iter().position(|(o, _)| *o != owner).unwrap_or(handover.len());
        let frames: Vec<Box<[u8]>> = handover.drain(..split).map(|(_, f)| Box::from(&f[..])).collect();
        let n = frames.len() as u64;
        stats.handed_over += n;
        match executor.handle().spawn_on(owner, ingress_handed_over(frames)) {
            Ok(_) => {}
            Err(SpawnError::Closed { .. }) => stats.handover_owner_stopped += n,
            Err(_) => stats.handover_dropped += n,
        }
    }
}

/// Runs on the owning core: copies frames another core received for this
/// core's connections into this core's pool and processes them.
async fn ingress_handed_over(frames: Vec<Box<[u8]>>) {
    with_core(|core| {
        // Every core of a runtime runs the same backend, and only dataplane
        // cores hand frames over.
        let CoreNet::Dataplane(net) = core.net() else { return };
        let now = core.round_now();
        net.stack(|stack| {
            for bytes in frames {
                let Ok(mut frame) = stack.alloc_tx() else {
                    // No frame free: dropped (and counted) like a frame the
                    // NIC could not place; TCP retransmits it.
                    core.count_handover_lost();
                    continue;
                };
                if frame.extend_from_slice(&bytes).is_ok() {
                    stack.ingress(frame.freeze(), now);
                }
            }
        });
    });
}
