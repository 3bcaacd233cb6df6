//! Property test of the packet pool: random sequences of alloc, freeze, clone,
//! slice, drop and try_into_mut checked against a model of handles per frame.

use std::collections::HashMap;

use ix_driver::region::HugePages;
use ix_driver::{PacketBuf, PacketPool, PoolConfig, TxBuf};
use proptest::prelude::*;

const POOL_FRAMES: u32 = 4;

#[derive(Debug, Clone)]
enum Op {
    Alloc,
    /// The operand is an index into the live handles, taken modulo their count.
    Freeze(usize),
    Clone(usize),
    Slice(usize),
    Drop(usize),
    TryIntoMut(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Alloc),
        2 => any::<usize>().prop_map(Op::Freeze),
        2 => any::<usize>().prop_map(Op::Clone),
        1 => any::<usize>().prop_map(Op::Slice),
        3 => any::<usize>().prop_map(Op::Drop),
        2 => any::<usize>().prop_map(Op::TryIntoMut),
    ]
}

enum Handle {
    Unique(TxBuf),
    Shared(PacketBuf),
}

impl Handle {
    fn frame(&self) -> u32 {
        match self {
            Handle::Unique(tx) => tx.frame_index(),
            Handle::Shared(rx) => rx.frame_index(),
        }
    }
}

/// The model: handles per frame, for frames held.
#[derive(Default)]
struct Model {
    refs: HashMap<u32, u32>,
}

impl Model {
    fn held(&self) -> u32 {
        self.refs.len() as u32
    }

    fn add(&mut self, frame: u32) {
        *self.refs.entry(frame).or_default() += 1;
    }

    fn remove(&mut self, frame: u32) {
        let n = self.refs.get_mut(&frame).expect("model knows every live frame");
        *n -= 1;
        if *n == 0 {
            self.refs.remove(&frame);
        }
    }
}

fn check(pool: &PacketPool, handles: &[Handle], model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(pool.available(), POOL_FRAMES - model.held());
    for handle in handles {
        let frame = handle.frame();
        let expected = model.refs[&frame];
        match handle {
            // A unique handle's frame is handed out to nobody else.
            Handle::Unique(_) => prop_assert_eq!(expected, 1, "frame {} unique but shared", frame),
            Handle::Shared(rx) => prop_assert_eq!(rx.frame_refs(), expected),
        }
    }
    Ok(())
}

fn apply(pool: &PacketPool, handles: &mut Vec<Handle>, model: &mut Model, op: Op) -> Result<(), TestCaseError> {
    let pick = |i: usize, len: usize| if len == 0 { None } else { Some(i % len) };
    match op {
        Op::Alloc => match pool.alloc() {
            Ok(mut tx) => {
                prop_assert!(model.held() < POOL_FRAMES, "alloc succeeded with every frame held");
                let frame = tx.frame_index();
                prop_assert!(!model.refs.contains_key(&frame), "frame {} handed out twice", frame);
                tx.extend_from_slice(&frame.to_be_bytes()).unwrap();
                model.add(frame);
                handles.push(Handle::Unique(tx));
            }
            Err(_) => prop_assert_eq!(model.held(), POOL_FRAMES, "exhausted with frames free"),
        },
        Op::Freeze(i) => {
            if let Some(i) = pick(i, handles.len()) {
                if let Handle::Unique(_) = handles[i] {
                    let Handle::Unique(tx) = handles.swap_remove(i) else { unreachable!() };
                    handles.push(Handle::Shared(tx.freeze()));
                }
            }
        }
        Op::Clone(i) | Op::Slice(i) => {
            if let Some(Handle::Shared(rx)) = pick(i, handles.len()).map(|i| &handles[i]) {
                let copy = match op {
                    Op::Clone(_) => rx.clone(),
                    _ => rx.slice(rx.len().min(1)..),
                };
                prop_assert!(rx.ends_with(&copy), "a view shares its frame's bytes");
                model.add(copy.frame_index());
                handles.push(Handle::Shared(copy));
            }
        }
        Op::Drop(i) => {
            if let Some(i) = pick(i, handles.len()) {
                let handle = handles.swap_remove(i);
                model.remove(handle.frame());
            }
        }
        Op::TryIntoMut(i) => {
            if let Some(i) = pick(i, handles.len()) {
                if let Handle::Shared(_) = handles[i] {
                    let Handle::Shared(rx) = handles.swap_remove(i) else { unreachable!() };
                    let frame = rx.frame_index();
                    let alone = model.refs[&frame] == 1;
                    match rx.try_into_mut() {
                        Ok(tx) => {
                            prop_assert!(alone, "frame {} made writable while shared", frame);
                            handles.push(Handle::Unique(tx));
                        }
                        Err(rx) => {
                            prop_assert!(!alone, "frame {} refused although alone", frame);
                            handles.push(Handle::Shared(rx));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_pool_agrees_with_a_model_of_handles(ops in proptest::collection::vec(op(), 1..200)) {
        let pool = PacketPool::new(PoolConfig { frames: POOL_FRAMES, huge_pages: HugePages::Never }).unwrap();
        let mut handles = Vec::new();
        let mut model = Model::default();
        for op in ops {
            apply(&pool, &mut handles, &mut model, op)?;
            check(&pool, &handles, &model)?;
        }
        drop(handles);
        prop_assert_eq!(pool.available(), POOL_FRAMES, "every frame returns when all handles drop");
    }
}
