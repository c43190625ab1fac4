//! The model-based test with the memory provider on both sides: a check of the harness itself.
//! Memory against memory must never differ; a mismatch here is nondeterminism in the runtime or
//! a defect of the driver, never a provider bug.

use instore_conformance::model::{memory_subject, replay, run_model, Keys, Op};

#[test]
fn memory_matches_memory_over_generated_sequences() {
    // 2,500 steps; about 2 s in a debug build.
    let report = run_model(memory_subject, 25, 100);
    assert!(report.steps >= 2_000, "{report}");
    assert_eq!(report.cases, 25);
}

/// How a shrunk failure is kept: a fixed sequence replayed on both sides. This one hands an
/// executing instance to a second owner through `TryLoadRunnable`, loses every owner, and lets
/// a new owner take the instance over from the dead one.
#[test]
fn a_fixed_sequence_replays() {
    let save = |h: u8, unlock: bool| Op::Save {
        h,
        data: Some(1),
        meta: [Some((0, Some(0))), None],
        associate: Keys(0b0000),
        complete_keys: Keys(0b0000),
        free_keys: Keys(0b0000),
        timer: None,
        status: 0,
        bookmarks: 0b01,
        suspend: 0,
        complete: false,
        unlock,
    };
    let report = replay(
        memory_subject,
        vec![
            Op::CreateOwner { host_type: Some(0) },
            Op::CreateOwner { host_type: Some(0) },
            Op::LoadByKey {
                h: 0,
                key: 0,
                accept_uninitialized: true,
                create_with_id: None,
                associate: Keys(0b0010),
                allow_suspended: false,
            },
            save(0, true),
            Op::TryLoadRunnable { h: 1 },
            Op::PastLease,
            Op::CreateOwner { host_type: Some(0) },
            Op::TryLoadRunnable { h: 2 },
            Op::Advance { secs: 3 },
            save(2, false),
            Op::Free { h: 2 },
            Op::QueryActivatable { h: 3 },
        ],
    );
    let ended = |what: &str| report.outcomes.get(what).copied().unwrap_or(0);
    assert_eq!(ended("TryLoadRunnable: ok"), 2, "{report}");
    assert_eq!(ended("Save: ok"), 2, "{report}");
    assert_eq!(report.skipped, 0, "{report}");
}
