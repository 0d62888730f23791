//! Every committed fuzz corpus (`fuzz/corpus/<target>/`) replayed through
//! the checks the fuzz targets run (`fuzz/checks.rs`), on stable, in every
//! `cargo test`: an input that once crashed a target stays fixed.
//! `fuzz/run-all.sh` grows the corpora on nightly.

#[path = "../../fuzz/checks.rs"]
mod checks;

#[test]
fn every_corpus_replays_without_a_finding() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for (name, check) in checks::TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (each target keeps a corpus)", dir.display()));
        let mut n = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
            n += 1;
        }
        assert!(n > 0, "{name}: an empty corpus");
        total += n;
    }
    assert!(total >= checks::TARGETS.len());
}
