//! axe-core, Deque's accessibility rules engine, run inside the page under test: the
//! browser tests inject `axe.min.js` from `tests/browser-tools/` (which `.ci/run` installs
//! with `npm ci`) and read its violations back through WebDriver.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::webdriver::Browser;

pub struct Axe {
    source: String,
}

/// One rule a page breaks, with where.
#[derive(Debug, Clone)]
pub struct Violation {
    pub rule: String,
    /// minor, moderate, serious or critical.
    pub impact: String,
    pub help: String,
    /// How many elements break it, and the first few of them (CSS selectors).
    pub count: usize,
    pub targets: Vec<String>,
}

impl Violation {
    /// Serious and critical violations fail the tests; minor and moderate ones are reported.
    pub fn fails(&self) -> bool {
        matches!(self.impact.as_str(), "serious" | "critical")
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} [{}] x{}: {} ({})",
            self.rule,
            self.impact,
            self.count,
            self.help,
            self.targets.join(" | ")
        )
    }
}

const AXE_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/browser-tools/node_modules/axe-core/axe.min.js"
);

impl Axe {
    /// axe-core's script, or `None` (the check is skipped, saying so) when `npm ci` has not
    /// run in tests/browser-tools; under CI=true a missing axe fails the test.
    pub fn load() -> Option<Axe> {
        match std::fs::read_to_string(AXE_PATH) {
            Ok(source) => Some(Axe { source }),
            Err(e) => {
                let why = format!(
                    "{AXE_PATH}: {e} (run `npm ci --prefix tests/browser-tools`, as .ci/run does)"
                );
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("the accessibility checks must run in CI: {why}");
                }
                eprintln!("SKIPPED accessibility check: {why}");
                None
            }
        }
    }

    /// Every rule the page in `b` breaks, as axe-core's default rule set (WCAG 2.0, 2.1 and
    /// 2.2 A and AA, and best practices) finds them.
    pub async fn violations(&self, b: &Browser) -> Vec<Violation> {
        self.run(b, serde_json::json!({"resultTypes": ["violations"]}))
            .await
    }

    /// Only the rules a theme can change: colour contrast, and links told apart from the
    /// text around them. (The others read the same page whatever its colours.)
    pub async fn colour_violations(&self, b: &Browser) -> Vec<Violation> {
        let rules = ["color-contrast", "link-in-text-block"];
        let options = serde_json::json!({
            "resultTypes": ["violations"],
            "runOnly": {"type": "rule", "values": rules},
        });
        self.run(b, options).await
    }

    /// Every rule in the light theme; in the dark one, those its colours can change.
    pub async fn in_theme(&self, b: &Browser, scheme: &str) -> Vec<Violation> {
        if scheme == "dark" {
            self.colour_violations(b).await
        } else {
            self.violations(b).await
        }
    }

    async fn run(&self, b: &Browser, options: Value) -> Vec<Violation> {
        b.execute(&format!("{}\n;return typeof window.axe", self.source))
            .await;
        let found = b
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 window.axe.run(document, arguments[0])
                   .then(r => done(r.violations.map(v => ({
                     rule: v.id, impact: v.impact || 'unknown', help: v.help,
                     count: v.nodes.length,
                     targets: v.nodes.slice(0, 4).map(n => n.target.join(' '))}))))
                   .catch(e => done({error: String(e)}));",
                vec![options],
            )
            .await;
        if let Some(e) = found.get("error") {
            panic!("axe-core failed: {e}");
        }
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        found
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|v| Violation {
                        rule: text(v, "rule"),
                        impact: text(v, "impact"),
                        help: text(v, "help"),
                        count: v["count"].as_u64().unwrap_or(0) as usize,
                        targets: v["targets"]
                            .as_array()
                            .map(|t| {
                                t.iter()
                                    .filter_map(|s| s.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Violations counted by impact ("critical 1 (1 elements), serious 2 (5 elements)": rules
/// broken, and the elements breaking them), for the report of a run.
pub fn by_impact(violations: &[Violation]) -> String {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for v in violations {
        let c = counts.entry(v.impact.as_str()).or_default();
        c.0 += 1;
        c.1 += v.count;
    }
    if counts.is_empty() {
        return "none".to_string();
    }
    ["critical", "serious", "moderate", "minor"]
        .iter()
        .filter_map(|i| {
            counts
                .get(i)
                .map(|(rules, nodes)| format!("{i} {rules} ({nodes} elements)"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
