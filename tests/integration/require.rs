//! The outside services some tests need (PostgreSQL, Chromium, the registry and skopeo,
//! Python packages). One rule for all: under `CI=true` (which `.ci/run` sets) a missing one
//! fails the test, since CI must run everything; elsewhere the test says what it skips and
//! why, and passes.

/// Whether this is a CI run, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The service's handle, or `None` after printing why the test is skipped (outside CI).
pub fn require<T>(service: &str, found: Result<T, String>) -> Option<T> {
    match found {
        Ok(found) => Some(found),
        Err(why) if in_ci() => panic!("{service} is needed, and CI must run every test: {why}"),
        Err(why) => {
            eprintln!("SKIPPED, {service} is missing: {why}");
            None
        }
    }
}

/// A program's path on `PATH`.
pub fn program(name: &str) -> Result<String, String> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
                .map(|p| p.display().to_string())
        })
        .ok_or_else(|| format!("{name} is not on PATH"))
}
