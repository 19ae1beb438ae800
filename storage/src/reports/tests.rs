//! The job store on real files: sharing, restart, results, sweeping.

use std::time::Duration;

use super::*;
use crate::ids::{BuildingId, TenantId};

fn request(building: &str) -> ReportRequest {
    ReportRequest {
        tenant_id: TenantId::parse("t").unwrap(),
        building_id: BuildingId::parse(building).unwrap(),
        start_ms: 0,
        end_ms: 86_400_000,
        format: ReportFormat::Json,
        forecast_days: 7,
    }
}

const HOUR: i64 = 3_600_000;

#[test]
fn identical_requests_share_a_job_until_the_cache_period_ends_or_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReportStore::open(dir.path(), 0).unwrap();
    let (a, new_a) = store.submit(request("b"), 0, HOUR).unwrap();
    let (b, new_b) = store.submit(request("b"), HOUR - 1, HOUR).unwrap();
    assert!(new_a && !new_b);
    assert_eq!(a.id, b.id);
    let (other, _) = store.submit(request("c"), 1, HOUR).unwrap();
    assert_ne!(other.id, a.id);
    let (later, new_later) = store.submit(request("b"), HOUR, HOUR).unwrap();
    assert!(new_later && later.id != a.id);
    assert_eq!(store.queue_depth(), 3);
    // A failed job is not handed out again: the next request tries anew.
    let taken = store.take(|| 5, Duration::ZERO).unwrap().unwrap();
    assert_eq!(taken.id, a.id);
    store.fail(&a.id, "no data", 6).unwrap();
    let job = store.job(&a.id).unwrap();
    assert_eq!(
        (job.status, job.error.as_deref()),
        (JobStatus::Failed, Some("no data"))
    );
}

#[test]
fn queued_and_running_jobs_are_queued_again_after_a_restart_and_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = {
        let store = ReportStore::open(dir.path(), 0).unwrap();
        let (first, _) = store.submit(request("b"), 1, HOUR).unwrap();
        let (second, _) = store.submit(request("c"), 2, HOUR).unwrap();
        let running = store.take(|| 3, Duration::ZERO).unwrap().unwrap();
        assert_eq!(running.status, JobStatus::Running);
        (first, second)
    };
    let store = ReportStore::open(dir.path(), 10).unwrap();
    assert_eq!(store.queue_depth(), 2);
    let again = store.take(|| 11, Duration::ZERO).unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.runs), (first.id.as_str(), 2));
    let done = store.finish(&again.id, b"{\"total_kwh\":1}", 12).unwrap();
    assert_eq!(done.status, JobStatus::Done);
    assert_eq!(store.result(&done).unwrap(), b"{\"total_kwh\":1}");
    assert_eq!(
        store.take(|| 13, Duration::ZERO).unwrap().unwrap().id,
        second.id
    );
    assert!(
        store
            .take(|| 14, Duration::from_millis(10))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_job_that_stopped_the_daemon_three_times_fails_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = ReportStore::open(dir.path(), 0).unwrap();
        store.submit(request("b"), 1, HOUR).unwrap().0.id
    };
    for now in 1..=3 {
        let store = ReportStore::open(dir.path(), now).unwrap();
        assert_eq!(store.take(|| now, Duration::ZERO).unwrap().unwrap().id, id);
    }
    let store = ReportStore::open(dir.path(), 4).unwrap();
    let job = store.job(&id).unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error.unwrap().contains("stopped 3 times"));
    assert_eq!(store.queue_depth(), 0);
}

#[test]
fn sweeping_deletes_old_jobs_their_files_and_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReportStore::open(dir.path(), 0).unwrap();
    let (job, _) = store.submit(request("b"), 0, HOUR).unwrap();
    store.take(|| 1, Duration::ZERO).unwrap();
    store.finish(&job.id, b"x", 2).unwrap();
    let file = dir.path().join("reports").join(format!("{}.json", job.id));
    assert!(file.exists());
    std::fs::write(dir.path().join("reports").join("pdeadbeef.tmp"), b"half").unwrap();
    assert_eq!(store.sweep(2 + HOUR, HOUR).unwrap(), 0);
    assert_eq!(store.sweep(3 + HOUR, HOUR).unwrap(), 1);
    assert!(store.job(&job.id).is_none() && !file.exists());
    drop(store);
    ReportStore::open(dir.path(), 10).unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path().join("reports"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_tenant_has_a_bounded_number_of_pending_and_kept_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReportStore::open(dir.path(), 0).unwrap().with_limits(2, 3);
    let of = |tenant: &str, building: &str| ReportRequest {
        tenant_id: TenantId::parse(tenant).unwrap(),
        ..request(building)
    };
    store.submit(of("t", "b1"), 0, HOUR).unwrap();
    store.submit(of("t", "b2"), 0, HOUR).unwrap();
    let refused = store.submit(of("t", "b3"), 0, HOUR).unwrap_err();
    assert!(
        matches!(refused, crate::Error::TooMuchPending(_)),
        "{refused}"
    );
    // Another tenant is not held up by this one.
    store.submit(of("u", "b1"), 0, HOUR).unwrap();
    // Finishing makes room; at the kept limit the oldest finished job goes.
    let mut finished = Vec::new();
    for now in 1..=2 {
        let job = loop {
            let j = store.take(|| now, Duration::ZERO).unwrap().unwrap();
            if j.request.tenant_id.as_str() == "t" {
                break j;
            }
            store.finish(&j.id, b"u", now).unwrap();
        };
        store.finish(&job.id, b"t", now).unwrap();
        finished.push(job.id);
    }
    store.submit(of("t", "b3"), 3, HOUR).unwrap();
    assert!(store.job(&finished[0]).is_some());
    store.submit(of("t", "b4"), 4, HOUR).unwrap();
    assert!(
        store.job(&finished[0]).is_none(),
        "the oldest finished job stays"
    );
    assert!(store.job(&finished[1]).is_some());
    assert!(
        !dir.path()
            .join("reports")
            .join(format!("{}.json", finished[0]))
            .exists()
    );
}

#[test]
fn a_full_disk_fails_the_job_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReportStore::open(dir.path(), 0).unwrap();
    let (job, _) = store.submit(request("b"), 0, HOUR).unwrap();
    store.take(|| 1, Duration::ZERO).unwrap().unwrap();
    crate::faults::arm(
        crate::faults::FailPoint::ReportWrite,
        std::io::ErrorKind::StorageFull,
    );
    let err = store.finish(&job.id, b"{}", 2).unwrap_err();
    assert!(matches!(err, crate::Error::StorageFull), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("reports"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    store.fail(&job.id, "the disk is full", 3).unwrap();
    assert_eq!(store.job(&job.id).unwrap().status, JobStatus::Failed);
}

#[test]
fn an_unreadable_job_row_is_skipped_and_the_others_load() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = ReportStore::open(dir.path(), 0).unwrap();
        store.submit(request("b"), 0, HOUR).unwrap().0.id
    };
    {
        let db = redb::Database::open(dir.path().join("reports.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, &str>::new("jobs"))
            .unwrap()
            .insert("pbroken", "{not json")
            .unwrap();
        txn.commit().unwrap();
    }
    let store = ReportStore::open(dir.path(), 1).unwrap();
    assert_eq!(store.job(&id).unwrap().status, JobStatus::Queued);
    assert!(store.job("pbroken").is_none());
    assert_eq!(store.queue_depth(), 1);
}

#[test]
fn a_result_file_that_is_gone_fails_its_job_and_the_request_renders_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReportStore::open(dir.path(), 0).unwrap();
    let (job, _) = store.submit(request("b"), 0, HOUR).unwrap();
    store.take(|| 1, Duration::ZERO).unwrap();
    let done = store.finish(&job.id, b"{}", 2).unwrap();
    std::fs::remove_file(dir.path().join("reports").join(format!("{}.json", job.id))).unwrap();
    let err = store.result(&done).unwrap_err();
    assert!(matches!(err, crate::Error::NotFound { .. }), "{err}");
    assert_eq!(store.job(&job.id).unwrap().status, JobStatus::Failed);
    let (again, new) = store.submit(request("b"), 3, HOUR).unwrap();
    assert!(new && again.id != job.id);
}

#[test]
fn workers_take_the_tenant_served_longest_ago_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReportStore::open(dir.path(), 0).unwrap();
    let of = |tenant: &str, building: &str| ReportRequest {
        tenant_id: TenantId::parse(tenant).unwrap(),
        ..request(building)
    };
    for b in ["b1", "b2", "b3"] {
        store.submit(of("busy", b), 0, HOUR).unwrap();
    }
    store.submit(of("quiet", "b1"), 1, HOUR).unwrap();
    let order: Vec<String> = (0..4)
        .map(|_| {
            let j = store.take(|| 2, Duration::ZERO).unwrap().unwrap();
            format!("{}/{}", j.request.tenant_id, j.request.building_id)
        })
        .collect();
    assert_eq!(order, ["busy/b1", "quiet/b1", "busy/b2", "busy/b3"]);
}
