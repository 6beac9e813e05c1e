//! Unit and property tests of the planner.
use super::*;
use proptest::prelude::*;

fn v(version: &str) -> VersionRef {
    VersionRef {
        version: version.into(),
        image_path: format!(r"\\fs\apps\app_{version}.cim"),
        backend_name: format!("ns-app-v{}", version.replace('.', "-")),
    }
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s as i64).unwrap()
}

fn host(name: &str, checked: Option<u64>, ok: bool, msg: Option<&str>) -> HostObs {
    HostObs {
        name: name.into(),
        status: Some("Available".into()),
        checked_at: checked.map(t),
        succeeded: ok,
        message: msg.map(String::from),
    }
}

fn pools() -> Vec<PoolObs> {
    (0..3)
        .map(|ring| PoolObs {
            name: format!("hp-{ring}"),
            id: format!("/hostPools/hp-{ring}"),
            ring,
            on: Some(v("1.0.0.0").backend_name),
            switched_at: None,
            on_since: None,
            hosts: vec![host(&format!("h-{ring}"), None, false, None)],
        })
        .collect()
}

fn spec() -> RolloutSpec {
    RolloutSpec {
        soak: "1m".into(),
        ..RolloutSpec::default()
    }
}

fn input<'a>(
    spec: &'a RolloutSpec,
    rollout: Option<&'a RolloutStatus>,
    pools: &'a [PoolObs],
    now: u64,
) -> Input<'a> {
    Input {
        spec,
        generation: 2,
        wanted: v("2.0.0.0"),
        current: Some(v("1.0.0.0")),
        others: vec![],
        rollout,
        pools,
        now: t(now),
        poll: Duration::from_secs(5),
        inactive: false,
    }
}

#[test]
fn maintenance_windows_open_weekly_in_their_time_zone() {
    let w = MaintenanceWindow {
        day_of_week: Weekday::Saturday,
        start_time: "22:00".into(),
        duration: "4h".into(),
        time_zone: "Europe/Amsterdam".into(),
    };
    let at = |s: &str| s.parse::<Timestamp>().unwrap();
    // Saturday 2026-11-28 22:00 in Amsterdam is 21:00 UTC; the window runs to 01:00 UTC.
    assert_eq!(
        window(&w, at("2026-11-28T21:30:00Z")),
        Ok(Window::Open(at("2026-11-29T01:00:00Z")))
    );
    assert_eq!(
        window(&w, at("2026-11-29T00:59:00Z")),
        Ok(Window::Open(at("2026-11-29T01:00:00Z")))
    );
    assert_eq!(
        window(&w, at("2026-11-29T01:00:00Z")),
        Ok(Window::Closed(at("2026-12-05T21:00:00Z")))
    );
    assert_eq!(
        window(&w, at("2026-11-24T12:00:00Z")),
        Ok(Window::Closed(at("2026-11-28T21:00:00Z")))
    );
    let bad = MaintenanceWindow {
        time_zone: "Mars/Olympus".into(),
        ..w
    };
    assert!(
        window(&bad, at("2026-11-24T12:00:00Z"))
            .unwrap_err()
            .contains("spec.rollout.maintenanceWindow.timeZone")
    );
}

#[test]
fn durations_parse_as_go_writes_them() {
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("5d"), None);
    assert_eq!(parse_duration(""), None);
}

#[test]
fn the_same_version_is_steady_and_a_first_version_is_no_rollout() {
    let s = spec();
    let p = pools();
    let mut i = input(&s, None, &p, 0);
    i.wanted = v("1.0.0.0");
    assert_eq!(plan(&i).action, Action::Steady);
    i.current = None;
    i.wanted = v("2.0.0.0");
    assert_eq!(plan(&i).action, Action::Steady);
}

/// Runs the planner as the reconciler would, with every host staging at once, and
/// returns the actions in order.
fn run(spec: &RolloutSpec, mut pools: Vec<PoolObs>, fail_host: Option<&str>) -> Vec<Action> {
    let mut rollout: Option<RolloutStatus> = None;
    let mut now = 0;
    let mut actions = vec![];
    for _ in 0..100 {
        let i = input(spec, rollout.as_ref(), &pools, now);
        let plan = plan(&i);
        if plan.action == Action::Steady || plan.action == Action::FailedVersion {
            break;
        }
        actions.push(plan.action);
        let mut next = plan.next.clone().unwrap();
        match plan.action {
            Action::Switch { through } => {
                let m = mapping(&pools, &next, Some(through));
                for p in pools.iter_mut() {
                    let to = m[&p.id.to_ascii_lowercase()].clone();
                    if p.on.as_deref() != Some(&to) {
                        p.on = Some(to);
                        for h in p.hosts.iter_mut() {
                            let fails = fail_host == Some(h.name.as_str());
                            h.checked_at = Some(t(now + 1));
                            h.succeeded = !fails;
                            h.message =
                                fails.then(|| format!("cannot open {}", next.target.image_path));
                        }
                    }
                }
                next.step = Step::Staging;
            }
            Action::Finish => break, // the reconciler then records the target as current

            Action::RollBack => {
                let m = mapping(&pools, &next, None);
                for p in pools.iter_mut() {
                    p.on = Some(m[&p.id.to_ascii_lowercase()].clone());
                }
                next.phase = Phase::Failed;
                next.step = Step::Done;
                next.failed_generation = Some(2);
            }
            _ => {}
        }
        rollout = Some(next);
        now += plan.requeue.map_or(1, |d| d.as_secs().max(1));
    }
    actions
}

#[test]
fn a_good_version_moves_ring_by_ring_and_finishes() {
    let actions = run(&spec(), pools(), None);
    let switches: Vec<i32> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Switch { through } => Some(*through),
            _ => None,
        })
        .collect();
    assert_eq!(switches, [0, 1, 2]);
    assert_eq!(actions.last(), Some(&Action::Finish));
    assert!(!actions.contains(&Action::RollBack));
}

#[test]
fn a_failed_ring_rolls_back_and_later_rings_are_never_switched() {
    let actions = run(&spec(), pools(), Some("h-0"));
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Switch { .. }))
            .count(),
        1
    );
    assert_eq!(actions.last(), Some(&Action::RollBack));
}

#[test]
fn tolerated_failures_proceed() {
    let s = RolloutSpec {
        max_staging_failures: 1,
        ..spec()
    };
    let actions = run(&s, pools(), Some("h-0"));
    assert_eq!(actions.last(), Some(&Action::Finish));
}

#[test]
fn a_failed_version_is_not_retried_until_the_spec_changes() {
    let s = spec();
    let p = pools();
    let failed = RolloutStatus {
        phase: Phase::Failed,
        step: Step::Done,
        failed_generation: Some(2),
        ..started()
    };
    let i = input(&s, Some(&failed), &p, 10);
    assert_eq!(plan(&i).action, Action::FailedVersion);
    let mut i = input(&s, Some(&failed), &p, 10);
    i.generation = 3;
    let again = plan(&i);
    assert_eq!(again.action, Action::Record);
    assert_eq!(again.next.unwrap().revision, 2);
}

fn started() -> RolloutStatus {
    RolloutStatus {
        revision: 1,
        target: v("2.0.0.0"),
        previous: vec![v("1.0.0.0")],
        phase: Phase::Progressing,
        step: Step::Pending,
        ring: Some(0),
        step_started_at: Some(format_time(t(0))),
        started_at: Some(format_time(t(0))),
        message: None,
        failed_generation: None,
        notified_sessions: 0,
        logged_off_sessions: 0,
        notified_pools: vec![],
        logged_off_pools: vec![],
        drained_hosts: vec![],
        cycled_hosts: vec![],
    }
}

#[test]
fn paused_holds_before_a_switch_and_the_gate_waits_for_every_host() {
    let s = RolloutSpec {
        paused: true,
        ..spec()
    };
    let p = pools();
    let r = started();
    let plan1 = plan(&input(&s, Some(&r), &p, 1));
    assert_eq!(plan1.action, Action::Record);
    assert_eq!(plan1.next.unwrap().phase, Phase::Paused);

    let s = spec();
    let staging = RolloutStatus {
        step: Step::Staging,
        step_started_at: Some(format_time(t(10))),
        ..started()
    };
    let mut p = pools();
    // A report from before the switch does not count.
    p[0].hosts[0] = host("h-0", Some(5), true, None);
    let waiting = plan(&input(&s, Some(&staging), &p, 20));
    assert!(
        waiting
            .next
            .unwrap()
            .message
            .unwrap()
            .contains("waiting for 1 of 1")
    );
    p[0].hosts[0] = host("h-0", Some(15), true, None);
    let soaking = plan(&input(&s, Some(&staging), &p, 20));
    assert_eq!(soaking.next.unwrap().step, Step::Soaking);
    assert_eq!(
        soaking.requeue,
        Some(Duration::from_secs(5)),
        "the poll, to watch the gate"
    );
    // A host failing while the ring soaks fails the gate.
    let soaking_status = RolloutStatus {
        step: Step::Soaking,
        step_started_at: Some(format_time(t(20))),
        ..staging.clone()
    };
    p[0].hosts[0] = host(
        "h-0",
        Some(25),
        false,
        Some(r"cannot open \\fs\apps\app_2.0.0.0.cim"),
    );
    let failed = plan(&input(&s, Some(&soaking_status), &p, 30));
    assert_eq!(failed.action, Action::RollBack);
}

/// A slow host's failure of the version a newer spec superseded comes in after the switch
/// to the newer one: it says nothing yet of the newer image, so the host waits in the gate
/// rather than counting as staged. (The rollout property test found a ring-2 pool given
/// 3.0.0.0 because ring 0's failing host had reported its 2.0.0.0 failure late.)
#[test]
fn a_late_failure_of_a_superseded_version_is_not_a_success_of_the_target() {
    let hosts = [
        host(
            "a",
            Some(10),
            false,
            Some(r"cannot open \\fs\apps\app_2.0.0.0.cim"),
        ),
        host("b", Some(10), true, None),
    ];
    let g = gate(
        &hosts,
        t(5),
        &v("3.0.0.0").image_path,
        &[v("1.0.0.0"), v("2.0.0.0")],
    );
    assert_eq!(g.pending, ["a"]);
    assert_eq!(g.staged, ["b"]);
    assert!(g.failed.is_empty());
    // Without the superseded version among the rollout's earlier ones: another package's
    // failure, which says the host staged this one.
    let g = gate(&hosts, t(5), &v("3.0.0.0").image_path, &[v("1.0.0.0")]);
    assert_eq!(g.staged, ["a", "b"]);
}

#[test]
fn a_failure_naming_another_image_does_not_count_against_this_one() {
    let hosts = [
        host(
            "a",
            Some(10),
            false,
            Some(r"cannot open \\fs\apps\other.cim"),
        ),
        host(
            "b",
            Some(10),
            false,
            Some(r"cannot open \\FS\apps\app_2.0.0.0.cim"),
        ),
        HostObs {
            status: Some("Shutdown".into()),
            ..host("c", None, false, None)
        },
    ];
    let g = gate(&hosts, t(5), r"\\fs\apps\app_2.0.0.0.cim", &[]);
    assert_eq!(g.staged, ["a"]);
    assert_eq!(g.failed.len(), 1);
    assert_eq!(g.skipped, ["c"]);
}

/// The switch is recorded before it is written: a check stamped at that very instant may
/// have read the pool before the switch, so it stages nothing (found by the rollout
/// property test, in MSIX mode).
#[test]
fn a_check_stamped_at_the_switch_itself_says_nothing_of_the_new_version() {
    let hosts = [
        host("a", Some(5), true, None),
        host("b", Some(6), true, None),
    ];
    let g = gate(&hosts, t(5), r"\\fs\apps\app_2.0.0.0.cim", &[]);
    assert_eq!(g.pending, ["a"]);
    assert_eq!(g.staged, ["b"]);
}

#[test]
fn a_newer_spec_supersedes_and_going_back_rolls_back() {
    let s = spec();
    let p = pools();
    let r = RolloutStatus {
        step: Step::Soaking,
        ..started()
    };
    let mut i = input(&s, Some(&r), &p, 5);
    i.wanted = v("3.0.0.0");
    let sup = plan(&i);
    let next = sup.next.unwrap();
    assert_eq!(next.target.version, "3.0.0.0");
    assert_eq!(
        next.previous
            .iter()
            .map(|p| p.version.as_str())
            .collect::<Vec<_>>(),
        ["1.0.0.0", "2.0.0.0"]
    );
    assert_eq!(next.revision, 2);
    i.wanted = v("1.0.0.0");
    assert_eq!(plan(&i).action, Action::RollBack);
}

#[test]
fn pools_keep_a_superseded_version_until_their_ring_switches() {
    let mut p = pools();
    p[0].on = Some(v("2.0.0.0").backend_name);
    p[2].on = None; // assigned mid-rollout
    let r = RolloutStatus {
        target: v("3.0.0.0"),
        previous: vec![v("1.0.0.0"), v("2.0.0.0")],
        ..started()
    };
    let m = mapping(&p, &r, None);
    assert_eq!(m["/hostpools/hp-0"], v("2.0.0.0").backend_name);
    assert_eq!(m["/hostpools/hp-1"], v("1.0.0.0").backend_name);
    assert_eq!(m["/hostpools/hp-2"], v("1.0.0.0").backend_name);
    let m = mapping(&p, &r, Some(0));
    assert_eq!(m["/hostpools/hp-0"], v("3.0.0.0").backend_name);
}

proptest! {
    /// Whatever the rings and whichever host fails, rings switch in ascending order,
    /// never twice, and a rollout ends in exactly one Finish or RollBack.
    #[test]
    fn rollouts_switch_rings_in_order_and_end_once(
        rings in proptest::collection::vec(0i32..4, 1..6),
        fail in proptest::option::of(0usize..6),
        tolerated in 0i32..2,
    ) {
        let pools: Vec<PoolObs> = rings.iter().enumerate().map(|(i, &ring)| PoolObs {
            name: format!("hp-{i}"),
            id: format!("/hostPools/hp-{i}"),
            ring,
            on: Some(v("1.0.0.0").backend_name),
            switched_at: None,
            on_since: None,
            hosts: vec![host(&format!("h-{i}"), None, false, None)],
        }).collect();
        let s = RolloutSpec { max_staging_failures: tolerated, ..spec() };
        let failing = fail.filter(|&f| f < pools.len()).map(|f| format!("h-{f}"));
        let actions = run(&s, pools, failing.as_deref());
        let switches: Vec<i32> = actions.iter().filter_map(|a| match a {
            Action::Switch { through } => Some(*through), _ => None }).collect();
        prop_assert!(switches.windows(2).all(|w| w[0] < w[1]));
        let ends = actions.iter().filter(|a| matches!(a, Action::Finish | Action::RollBack)).count();
        prop_assert_eq!(ends, 1);
        let rolled_back = actions.last() == Some(&Action::RollBack);
        prop_assert_eq!(rolled_back, failing.is_some() && tolerated == 0);
    }
}
