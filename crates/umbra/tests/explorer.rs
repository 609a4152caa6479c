//! The explorer in a real browser: headless Chromium, driven over WebDriver (chromedriver),
//! reads the pages `umbra localnet`'s explorer serves about a whole network of processes — a
//! solo validator, registered and bonded nodes, a monitor, delegations, finished epochs with
//! rewards. Every page loads with no console error and no failed request; its figures are the
//! ledger's; the node tables sort and filter; every chart draws; a phone's width scrolls no
//! page sideways; a stopped validator gives a banner, and the pages recover when it runs
//! again. Screenshots of every page are written under `target/tmp/explorer-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::localnet::{Localnet, SMALL, address_after, pid_of, poll, signal, temp_dir};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use umbra::network::get;
use umbra_explorer::render::html::umb;
use umbra_ledger::Amount;

/// The pages every check visits: (name, path); `{node}` and `{account}` are filled in.
const PAGES: [(&str, &str); 8] = [
    ("overview", "/"),
    ("mixnodes", "/mixnodes"),
    ("gateways", "/gateways"),
    ("node", "/nodes/{node}"),
    ("account", "/accounts/{account}"),
    ("epochs", "/epochs"),
    ("guide", "/guide"),
    ("guide-node", "/guide?node={node}"),
];

/// A phone's viewport (an iPhone 12's CSS pixels).
const PHONE: (u32, u32) = (390, 844);
/// A laptop's.
const DESKTOP: (u32, u32) = (1280, 900);

/// `chromedriver` listening on a free loopback port; killed when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    fn start() -> Chromedriver {
        let binary = ["chromedriver", "/usr/bin/chromedriver"]
            .into_iter()
            .find(|name| {
                Command::new(name)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            })
            .unwrap_or_else(|| {
                panic!("no chromedriver: install Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`; .ci/run does)")
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A headless Chromium session that keeps the browser's console log.
    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-extensions",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                ],
            }),
        );
        capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium's console log since it was last read (chromedriver's `se/log`): every console
/// message, uncaught exception and failed load, with its level.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// The console's warnings and errors since the last call.
async fn console_problems(browser: &Client) -> Vec<String> {
    let log = browser.issue_cmd(BrowserLog).await.unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["level"] == "SEVERE" || entry["level"] == "WARNING")
        .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every request the page made (the page itself first) that did not end in 200, as
/// `status url` (the browser's Resource Timing, which records every request's status).
async fn failed_requests(browser: &Client) -> Vec<String> {
    let failed = browser
        .execute(
            "return performance.getEntriesByType('navigation')
                .concat(performance.getEntriesByType('resource'))
                .filter(e => e.responseStatus !== 200)
                .map(e => e.responseStatus + ' ' + e.name);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(failed).unwrap()
}

/// Loads `path` and waits until the document is complete.
async fn open(browser: &Client, base: &str, path: &str) {
    browser.goto(&format!("{base}{path}")).await.unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("footer"))
        .await
        .unwrap_or_else(|error| panic!("{path} did not load: {error}"));
}

/// The text of the element `selector` picks.
async fn text(browser: &Client, selector: &str) -> String {
    browser
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|error| panic!("no {selector}: {error}"))
        .text()
        .await
        .unwrap()
}

/// The `data-value`s of column `column` (from 0) of the table `table`, top to bottom.
async fn column(browser: &Client, table: &str, column: usize) -> Vec<i64> {
    let values = browser
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr'))
                .map(row => Number(row.cells[arguments[1]].dataset.value));",
            vec![json!(table), json!(column)],
        )
        .await
        .unwrap();
    serde_json::from_value(values).unwrap()
}

/// The index of the column whose header link sorts by `key`.
async fn column_of(browser: &Client, key: &str) -> usize {
    let index = browser
        .execute(
            "const th = document.querySelector('th a[data-sort=\"' + arguments[0] + '\"]').closest('th');
             return Array.prototype.indexOf.call(th.parentElement.children, th);",
            vec![json!(key)],
        )
        .await
        .unwrap();
    index.as_u64().unwrap() as usize
}

/// Whether the page is wider than the viewport (a sideways scroll).
async fn scrolls_sideways(browser: &Client) -> (bool, Value) {
    let widths = browser
        .execute(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
            vec![],
        )
        .await
        .unwrap();
    let (scroll, client) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
    (scroll > client, widths)
}

/// For each chart (`svg.chart`) on the page: its title and how many marks it draws (lines
/// with points, bars with a size), as the browser laid it out.
async fn charts(browser: &Client) -> Vec<(String, u64)> {
    let charts = browser
        .execute(
            "return Array.from(document.querySelectorAll('svg.chart')).map(svg => {
                const lines = Array.from(svg.querySelectorAll('polyline'))
                    .filter(p => p.points.numberOfItems > 0 && p.getBBox().width > 0).length;
                const bars = Array.from(svg.querySelectorAll('rect:not([width=\"10\"])'))
                    .filter(r => r.getBBox().height > 0).length;
                return [svg.getAttribute('aria-label'), lines + bars];
             });",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(charts).unwrap()
}

/// Where screenshots go: `target/tmp/explorer-screenshots/`.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explorer-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A screenshot of the whole page (the window made as tall as the page for it, up to
/// 8,000 pixels) at the window's width.
async fn screenshot(browser: &Client, name: &str) {
    let (width, height) = browser.get_window_size().await.unwrap();
    let page_height = browser
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap()
        .clamp(u64::from(height as u32), 8_000) as u32;
    browser
        .set_window_size(width as u32, page_height)
        .await
        .unwrap();
    let png = browser.screenshot().await.unwrap();
    browser
        .set_window_size(width as u32, height as u32)
        .await
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// The validator's JSON answer to `path`.
fn ledger(validator: SocketAddr, path: &str) -> Value {
    serde_json::from_str(&get(validator, path).unwrap_or_else(|| panic!("GET {path}"))).unwrap()
}

fn amount(value: &Value) -> Amount {
    Amount(
        value
            .as_u64()
            .unwrap_or_else(|| panic!("not an amount: {value}")),
    )
}

/// The public key of the account whose key file is `path`.
fn account_of(path: &Path) -> String {
    common::localnet::account_of(path)
}

/// A node of the network, as `layout.json` names it.
struct LocalNode {
    name: String,
    id: u64,
    mix: bool,
}

fn local_nodes(dir: &Path) -> Vec<LocalNode> {
    let layout: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(umbra::network::LAYOUT_FILE)).unwrap(),
    )
    .unwrap();
    layout["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| LocalNode {
            name: node["name"].as_str().unwrap().to_owned(),
            id: node["id"].as_u64().unwrap(),
            mix: node["kind"] == "mix",
        })
        .collect()
}

/// `umbra tx … delegate` of `amount` UMB to `node`, signed with the key file `key`.
fn delegate(validator: SocketAddr, key: &Path, node: u64, amount: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["tx", "--validator", &format!("http://{validator}"), "--key"])
        .arg(key)
        .args(["delegate", "--node", &node.to_string(), "--amount", amount])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "delegate: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `check` against fresh ledger answers until it passes in one epoch: the explorer's
/// snapshot and the ledger are read at slightly different moments, and an epoch's end
/// between them may change every figure.
async fn same_epoch<F, Fut>(validator: SocketAddr, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut failures = Vec::new();
    for _ in 0..4 {
        let before = ledger(validator, "/epoch")["epoch"].as_u64();
        let result = check().await;
        let after = ledger(validator, "/epoch")["epoch"].as_u64();
        match result {
            Ok(()) if before == after => return,
            Ok(()) => {}
            Err(problem) if before == after => panic!("{problem}"),
            Err(problem) => failures.push(problem),
        }
    }
    panic!("every try straddled an epoch's end: {failures:?}");
}

#[test]
fn the_explorer_in_a_real_browser_shows_the_ledger_of_a_running_network() {
    let dir = temp_dir("explorer-browser");
    let mut net = Localnet::start(&dir, &SMALL);
    let output = net.wait_for("Ctrl-C stops everything.");
    let validator = address_after(&output, "validator-1 (solo)  API http://");
    let explorer = address_after(&output, "Explorer  http://");
    let monitor = address_after(&output, "evidence of each epoch at http://");
    let base = format!("http://{explorer}");

    // stake moves: one operator delegates to another's mix node and to a gateway
    let nodes = local_nodes(&dir);
    let (delegator_node, mix, gateway) = (
        nodes.iter().find(|node| node.mix).unwrap(),
        nodes.iter().filter(|node| node.mix).nth(1).unwrap(),
        nodes.iter().find(|node| !node.mix).unwrap(),
    );
    let key = dir
        .join("operators")
        .join(format!("{}.key", delegator_node.name));
    let delegator = account_of(&key);
    delegate(validator, &key, mix.id, "300");
    delegate(validator, &key, gateway.id, "150.5");

    // an epoch with the delegation in force has ended, and paid its delegators
    let paid_epoch = poll(validator, "/epochs", Duration::from_secs(120), |epochs| {
        epochs.as_array()?.iter().find_map(|report| {
            let entry = report["nodes"]
                .as_array()?
                .iter()
                .find(|entry| entry["node"].as_u64() == Some(mix.id))?;
            (entry["delegations"].as_u64()? > 0 && entry["payout"]["delegators"].as_u64()? > 0)
                .then(|| report["epoch"].as_u64().unwrap())
        })
    });
    // and the explorer has read it
    poll(explorer, "/api/epochs", Duration::from_secs(30), |page| {
        page["page"]["past"]
            .as_array()?
            .iter()
            .any(|epoch| epoch["epoch"].as_u64() == Some(paid_epoch))
            .then_some(())
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let driver = Chromedriver::start();
    runtime.block_on(async {
        let browser = driver.browser().await;
        let fill = |path: &str| {
            path.replace("{node}", &mix.id.to_string())
                .replace("{account}", &delegator)
        };

        // every page: no console error, no failed request, every chart drawn, no sideways
        // scroll at a phone's width; a screenshot at both widths
        for (name, path) in PAGES {
            let path = fill(path);
            browser
                .set_window_size(DESKTOP.0, DESKTOP.1)
                .await
                .unwrap();
            open(&browser, &base, &path).await;
            assert_eq!(console_problems(&browser).await, Vec::<String>::new(), "{path}");
            assert_eq!(failed_requests(&browser).await, Vec::<String>::new(), "{path}");
            for (chart, marks) in charts(&browser).await {
                assert!(marks > 0, "{path}: the chart {chart:?} draws nothing");
            }
            screenshot(&browser, &format!("{name}-desktop")).await;
            browser.set_window_size(PHONE.0, PHONE.1).await.unwrap();
            open(&browser, &base, &path).await;
            let (sideways, widths) = scrolls_sideways(&browser).await;
            assert!(!sideways, "{path} scrolls sideways on a phone: {widths}");
            screenshot(&browser, &format!("{name}-phone")).await;
            assert_eq!(console_problems(&browser).await, Vec::<String>::new(), "{path}");
        }
        browser.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();

        // the charts the overview and a node's page promise are there
        open(&browser, &base, "/").await;
        assert!(!charts(&browser).await.is_empty(), "the overview has no chart");
        open(&browser, &base, &format!("/nodes/{}", mix.id)).await;
        assert!(
            charts(&browser).await.len() >= 2,
            "a node's page charts its performance and rewards"
        );

        // the node's page explains its score with the monitor's evidence: the routes it was
        // tested on, as the monitor published them
        let deadline = Instant::now() + Duration::from_secs(60);
        let counts = loop {
            open(&browser, &base, &format!("/nodes/{}", mix.id)).await;
            if let Ok(counts) = browser.find(Locator::Css("[data-test=evidence-counts]")).await {
                break counts.text().await.unwrap();
            }
            assert!(Instant::now() < deadline, "the node's page shows no evidence");
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        // the first three figures in bold: routes, came back, lost
        let figures = browser
            .execute(
                "return Array.from(document.querySelectorAll('[data-test=evidence-counts] strong'))
                    .slice(0, 3).map(strong => Number(strong.textContent));",
                vec![],
            )
            .await
            .unwrap();
        let figures: Vec<u64> = serde_json::from_value(figures).unwrap();
        let shown = (figures[0], figures[1], figures[2]);
        assert!(shown.0 > 0, "tested on no route: {counts}");
        let published: Vec<(u64, u64, u64)> = ledger(validator, "/epochs")
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|report| {
                let evidence = get(monitor, &format!("/evidence/{}", report["epoch"]))?;
                let evidence = umbra_monitor::Evidence::from_json(&evidence).ok()?;
                let through: Vec<_> = evidence
                    .routes
                    .iter()
                    .filter(|route| route.hops.contains(&(mix.id as u32)))
                    .collect();
                let received = through.iter().filter(|route| route.latency_us.is_some()).count();
                Some((through.len() as u64, received as u64, (through.len() - received) as u64))
            })
            .collect();
        assert!(
            published.contains(&shown),
            "the page says {counts:?}; the monitor published (routes, received, lost) {published:?}"
        );

        // the figures are the ledger's
        same_epoch(validator, || async {
            let nodes = ledger(validator, "/nodes");
            let epochs = ledger(validator, "/epochs");
            let epoch = ledger(validator, "/epoch");
            open(&browser, &base, "/").await;
            let total: Amount = nodes
                .as_array()
                .unwrap()
                .iter()
                .map(|node| amount(&node["stake"]))
                .sum();
            let last = epochs.as_array().unwrap().last().unwrap();
            let paid: Amount = last["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| {
                    amount(&entry["payout"]["operator"]) + amount(&entry["payout"]["delegators"])
                })
                .sum();
            let shown = [
                (text(&browser, "[data-test=epoch]").await, epoch["epoch"].to_string()),
                (text(&browser, "[data-test=total-stake]").await, umb(total)),
                (text(&browser, "[data-test=last-rewards]").await, umb(paid)),
            ];
            for (on_page, in_ledger) in shown {
                if on_page != in_ledger {
                    return Err(format!("the overview shows {on_page}, the ledger {in_ledger}"));
                }
            }
            Ok(())
        })
        .await;
        same_epoch(validator, || async {
            let nodes = ledger(validator, "/nodes");
            open(&browser, &base, "/mixnodes").await;
            let ids = column(&browser, "table[data-sortable]", 0).await;
            let pledge = column(&browser, "table[data-sortable]", column_of(&browser, "pledge").await).await;
            let delegations =
                column(&browser, "table[data-sortable]", column_of(&browser, "delegations").await).await;
            let mut mixes = 0;
            for node in nodes.as_array().unwrap() {
                if node["info"]["kind"] != "mix" {
                    continue;
                }
                mixes += 1;
                let id = node["id"].as_i64().unwrap();
                let Some(row) = ids.iter().position(|&shown| shown == id) else {
                    return Err(format!("mix node {id} is not in the table"));
                };
                let (want_pledge, want_delegations) =
                    (node["pledge"].as_i64().unwrap(), node["delegations"].as_i64().unwrap());
                if (pledge[row], delegations[row]) != (want_pledge, want_delegations) {
                    return Err(format!(
                        "node {id}: the table shows pledge {} and delegations {}, the ledger {want_pledge} and {want_delegations}",
                        pledge[row], delegations[row]
                    ));
                }
            }
            if ids.len() != mixes {
                return Err(format!("{} rows for {mixes} mix nodes", ids.len()));
            }
            Ok(())
        })
        .await;
        same_epoch(validator, || async {
            let node = ledger(validator, &format!("/nodes/{}", mix.id));
            open(&browser, &base, &format!("/nodes/{}", mix.id)).await;
            let (on_page, in_ledger) = (text(&browser, "[data-test=stake]").await, umb(amount(&node["stake"])));
            if on_page != in_ledger {
                return Err(format!("node {}: stake {on_page} shown, {in_ledger} in the ledger", mix.id));
            }
            Ok(())
        })
        .await;
        same_epoch(validator, || async {
            let account = ledger(validator, &format!("/accounts/{delegator}"));
            open(&browser, &base, &format!("/accounts/{delegator}")).await;
            let balance = umb(amount(&account["balance"]));
            let shown = text(&browser, "[data-test=balance]").await;
            if shown != balance {
                return Err(format!("balance {shown} shown, {balance} in the ledger"));
            }
            let delegated: Amount = account["delegations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|delegation| amount(&delegation["value"]))
                .sum();
            let shown = text(&browser, "[data-test=delegated]").await;
            if shown != umb(delegated) {
                return Err(format!("delegations worth {shown} shown, {} in the ledger", umb(delegated)));
            }
            Ok(())
        })
        .await;

        // sorting, by the script (a click) and without it (the link's own URL)
        open(&browser, &base, "/mixnodes").await;
        let pledge = column_of(&browser, "pledge").await;
        let header = browser
            .find(Locator::Css("th a[data-sort=pledge]"))
            .await
            .unwrap();
        header.click().await.unwrap();
        let first = column(&browser, "table[data-sortable]", pledge).await;
        browser
            .find(Locator::Css("th a[data-sort=pledge]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let second = column(&browser, "table[data-sortable]", pledge).await;
        let (mut ascending, mut descending) = (first.clone(), first.clone());
        ascending.sort_unstable();
        descending.sort_unstable_by(|a, b| b.cmp(a));
        assert!(first.len() >= 6, "{first:?}");
        assert!(
            (first == descending && second == ascending)
                || (first == ascending && second == descending),
            "a click sorts by pledge, a second reverses: {first:?} then {second:?}"
        );
        let delegations_column = column_of(&browser, "delegations").await;
        open(&browser, &base, "/mixnodes?sort=delegations&dir=asc").await;
        let sorted = column(&browser, "table[data-sortable]", delegations_column).await;
        assert!(sorted.windows(2).all(|pair| pair[0] <= pair[1]), "{sorted:?}");
        assert!(sorted.last() > sorted.first(), "the delegated node sorts last: {sorted:?}");

        // filtering: layer 2 through the form
        same_epoch(validator, || async {
            let epoch = ledger(validator, "/epoch");
            let in_layer: Vec<i64> = serde_json::from_value(epoch["active"]["layers"][1].clone()).unwrap();
            open(&browser, &base, "/mixnodes").await;
            let select = browser.find(Locator::Css("select[name=layer]")).await.unwrap();
            select.select_by_value("2").await.unwrap();
            browser
                .find(Locator::Css("form.filters button"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut url = browser.current_url().await.unwrap();
            while !url.query().unwrap_or_default().contains("layer=2") {
                if Instant::now() > deadline {
                    return Err(format!("the form went to {url}"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                url = browser.current_url().await.unwrap();
            }
            browser
                .wait()
                .at_most(Duration::from_secs(20))
                .for_element(Locator::Css("footer"))
                .await
                .unwrap();
            let layer = column_of(&browser, "layer").await;
            let layers = column(&browser, "table[data-sortable]", layer).await;
            let mut ids = column(&browser, "table[data-sortable]", 0).await;
            ids.sort_unstable();
            let mut want = in_layer.clone();
            want.sort_unstable();
            if ids != want || layers.iter().any(|&layer| layer != 2) {
                return Err(format!("layer 2 shows nodes {ids:?} (layers {layers:?}); the ledger's layer 2 is {want:?}"));
            }
            Ok(())
        })
        .await;
        let search = browser.find(Locator::Css("[data-test=count]")).await.unwrap();
        assert!(search.text().await.unwrap().contains(" shown"));

        // the validator stops: a banner, and the last figures still there
        let validator_pid = pid_of(&dir.join("validator-1"));
        signal(validator_pid, "-STOP");
        let banner = async {
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                open(&browser, &base, "/").await;
                if let Ok(banner) = browser.find(Locator::Css(".banner")).await {
                    return banner.text().await.unwrap();
                }
                assert!(Instant::now() < deadline, "no banner with the validator stopped");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        .await;
        signal(validator_pid, "-CONT");
        assert!(banner.contains(&validator.to_string()), "the banner names the validator: {banner}");
        assert!(!text(&browser, "[data-test=total-stake]").await.is_empty());
        screenshot(&browser, "validator-stopped").await;
        assert_eq!(console_problems(&browser).await, Vec::<String>::new());

        // started again: the page recovers
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            open(&browser, &base, "/").await;
            if browser.find(Locator::Css(".banner")).await.is_err() {
                break;
            }
            assert!(Instant::now() < deadline, "the banner stayed after the validator came back");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(failed_requests(&browser).await, Vec::<String>::new());
        browser.close().await.unwrap();
    });
    drop(driver);

    let (status, output) = net.interrupt();
    assert!(status.success(), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}
