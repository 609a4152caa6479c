//! Mix nodes' own loops (Loopix λ_M) on loopback, on real Noise links: three mix nodes, one per
//! layer, and a real gateway. Each node's loops cross the other layers and the gateway and come
//! back; `/metrics` counts them; when the gateway goes, every node sees its loops vanish and
//! says so in `/health`, and when it is back, the alarm ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::time::Duration;

use common::http_get;
use common::loops::{LoopNet, stop, value, wait_until};
use umbra_mixnode::CoverConfig;
use umbra_net::metrics::sample;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_come_back_and_their_loss_is_seen() {
    // fast loops: 40/s, 2 ms per hop, lost after 1 s, the alarm over 20 loops
    let cover = CoverConfig {
        loop_rate: 40.0,
        mean_hop_delay: Duration::from_millis(2),
        loop_deadline: Duration::from_secs(1),
        loss_window: 20,
        loss_alarm: 0.2,
    };
    let mut net: LoopNet = common::loops::start("back", &cover, None).await;
    for (i, http) in net.mix_http.iter().enumerate() {
        let page = wait_until(*http, |page| {
            value(page, "umbra_mixnode_loops_returned_total") >= 30.0
        })
        .await;
        let returned = value(&page, "umbra_mixnode_loops_returned_total");
        assert!(returned >= 30.0, "mix {i}: {returned} loops back");
        let sent = value(&page, "umbra_mixnode_loops_sent_total");
        let lost = value(&page, "umbra_mixnode_loops_lost_total");
        let pending = value(&page, "umbra_mixnode_loops_pending");
        assert!(sent >= returned + lost, "mix {i}: {page}");
        assert!(
            lost <= 2.0,
            "mix {i}: {lost} loops lost of {sent} ({pending} out)"
        );
        assert_eq!(value(&page, "umbra_mixnode_loop_loss_alarm"), 0.0);
        assert!(value(&page, "umbra_mixnode_loop_round_trip_seconds_count") >= 30.0);
        // the loops are the node's own: nothing ended here that was not
        assert_eq!(
            sample(
                &page,
                "umbra_mixnode_packets_dropped_total{reason=\"final_hop\"}"
            ),
            None,
            "mix {i}"
        );
        let (status, health) = http_get(*http, "/health").await;
        assert!(status.contains("200"), "{status}");
        assert!(
            health.contains("\"status\":\"ok\"")
                && health.contains("\"loops\":{\"sent\":")
                && health.contains("\"alarm\":false"),
            "{health}"
        );
    }
    // every loop crosses the gateway once, into the first layer (its counters are published
    // every 250 ms)
    let gateway = wait_until(net.gateway_at[2], |page| {
        value(page, "umbra_gateway_packets_relayed_total") >= 90.0
    })
    .await;
    assert!(
        value(&gateway, "umbra_gateway_packets_relayed_total") >= 90.0,
        "{gateway}"
    );

    // the gateway goes: every loop is lost, and every node says so (and keeps serving)
    stop(net.gateway.take().unwrap()).await;
    for (i, http) in net.mix_http.iter().enumerate() {
        let page = wait_until(*http, |page| {
            value(page, "umbra_mixnode_loop_loss_alarm") == 1.0
        })
        .await;
        assert_eq!(
            value(&page, "umbra_mixnode_loop_loss_alarm"),
            1.0,
            "mix {i}: {page}"
        );
        assert!(value(&page, "umbra_mixnode_loop_recent_loss_ratio") > 0.2);
        let (status, health) = http_get(*http, "/health").await;
        assert!(status.contains("200"), "still serving: {status}");
        assert!(
            health.contains("\"status\":\"degraded\"")
                && health.contains("under attack or badly connected")
                && health.contains("\"alarm\":true"),
            "{health}"
        );
    }

    // the gateway is back: the loops come back, and the alarm ends
    let mut listeners = Vec::new();
    for address in net.gateway_at {
        listeners.push(tokio::net::TcpListener::bind(address).await.unwrap());
    }
    net.run_gateway(listeners.try_into().unwrap());
    for (i, http) in net.mix_http.iter().enumerate() {
        let page = wait_until(*http, |page| {
            value(page, "umbra_mixnode_loop_loss_alarm") == 0.0
        })
        .await;
        assert_eq!(
            value(&page, "umbra_mixnode_loop_loss_alarm"),
            0.0,
            "mix {i}: {page}"
        );
        assert!(value(&page, "umbra_mixnode_loop_recent_loss_ratio") <= 0.1);
        let health = http_get(*http, "/health").await.1;
        assert!(health.contains("\"status\":\"ok\""), "{health}");
    }
    for running in net.mixes.drain(..) {
        stop(running).await;
    }
    // its link to the first layer, now gone, would hold it for the 10 s a stopping node gives
    // its links to drain
    if let Some((_, task)) = net.gateway.take() {
        task.abort();
    }
    let _ = std::fs::remove_dir_all(&net.root);
}
