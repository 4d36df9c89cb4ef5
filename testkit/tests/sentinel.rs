//! The Sentinel harness itself: a killed master is replaced by its replica, and the old master
//! comes back as a replica of the new one.

use testkit::Sentinels;

#[test]
fn a_killed_master_is_replaced_and_comes_back_as_a_replica() {
    let mut set = Sentinels::start();
    assert_eq!(set.url().matches("sentinel://127.0.0.1:").count(), 3);
    set.master().cli(&["SET", "k", "v"]);
    let (old, killed) = set.kill_master();
    let new = set.wait_for_promotion(old);
    assert_ne!(new, old);
    eprintln!("promoted after {:?}", killed.elapsed());
    assert_eq!(
        set.master().cli(&["GET", "k"]),
        "v",
        "the replica had the write"
    );
    let restarted = std::time::Instant::now();
    set.restart(old);
    let back = testkit::sentinel::wait_until(|| {
        set.replica().port() == Some(old) && set.replica().cli(&["ROLE"]).starts_with("slave")
    });
    assert!(
        back,
        "the old master did not rejoin as a replica in {:?}\n{}",
        restarted.elapsed(),
        set.logs()
    );
    eprintln!("rejoined as a replica after {:?}", restarted.elapsed());
}
