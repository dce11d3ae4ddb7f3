use valet_tests::cli::Valet;
use valet_tests::files::sha256_file;
use valet_tests::service::ServiceOptions;

use crate::helpers::world;
use crate::watch_support::{LinkProxy, PATIENCE, Watch, ends_with, events};

#[test]
fn files_wait_while_the_service_is_unreachable_and_go_when_it_is_back() {
    let w = world("dee", ServiceOptions::default());
    let proxy = LinkProxy::start(&w.service.url);
    let valet = Valet::with_token(&proxy.url, &w.token);
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(&valet, dir.path(), &[]);
    std::fs::write(dir.path().join("before.txt"), b"before").unwrap();
    watch.wait_sent("before.txt", PATIENCE);

    proxy.cut();
    let path = dir.path().join("during.txt");
    std::fs::write(&path, b"written while the service is unreachable").unwrap();
    watch.wait_until("a failure to be retried", PATIENCE, |lines| {
        lines.iter().any(|l| {
            l["event"] == "failed" && ends_with(l, "during.txt") && l["retry_in_secs"].is_number()
        })
    });
    let failed = watch.events("failed");
    assert!(
        events(&watch.lines(), "sent").len() == 1,
        "nothing sent while the link is down"
    );

    proxy.restore();
    let sent = watch.wait_sent("during.txt", PATIENCE);
    let key = sent["object"].as_str().unwrap();
    assert_eq!(
        w.service.store().object_digest(key),
        Some((40, sha256_file(&path))),
        "sent complete once the service was back"
    );
    let lines = watch.stop();
    eprintln!(
        "measured: {} failed attempts while the link was down, first error {}",
        failed.len(),
        failed[0]["error"]
    );
    assert_eq!(events(&lines, "sent").len(), 2);
}
