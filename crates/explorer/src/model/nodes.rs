//! The mix node and gateway tables: every node of a kind, sorted and filtered as the query
//! string says (`?sort=performance&dir=desc&layer=2&active=yes&q=alice`).

use serde::Serialize;
use umbra_ledger::NodeKind;

use super::{NodeSummary, RECENT_EPOCHS};
use crate::snapshot::Snapshot;

/// A column the tables sort by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// The node's number.
    Id,
    /// Its moniker (alphabetically).
    Moniker,
    /// Its layer (inactive nodes last).
    Layer,
    /// The pledge.
    Pledge,
    /// The delegations.
    Delegations,
    /// Pledge and delegations.
    #[default]
    Stake,
    /// Stake over the saturation point.
    Saturation,
    /// The profit margin.
    Margin,
    /// The operating cost.
    Cost,
    /// Performance.
    Performance,
    /// What 1,000 UMB delegated earned per epoch lately.
    Earnings,
}

impl SortKey {
    /// Every key, in the tables' column order.
    pub const ALL: [SortKey; 11] = [
        SortKey::Id,
        SortKey::Moniker,
        SortKey::Layer,
        SortKey::Pledge,
        SortKey::Delegations,
        SortKey::Stake,
        SortKey::Saturation,
        SortKey::Margin,
        SortKey::Cost,
        SortKey::Performance,
        SortKey::Earnings,
    ];

    /// Its name in query strings.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Moniker => "moniker",
            SortKey::Layer => "layer",
            SortKey::Pledge => "pledge",
            SortKey::Delegations => "delegations",
            SortKey::Stake => "stake",
            SortKey::Saturation => "saturation",
            SortKey::Margin => "margin",
            SortKey::Cost => "cost",
            SortKey::Performance => "performance",
            SortKey::Earnings => "earnings",
        }
    }

    /// The key named `name` in a query string.
    pub fn parse(name: &str) -> Option<SortKey> {
        SortKey::ALL.into_iter().find(|key| key.name() == name)
    }

    /// The direction a click on the column first sorts in: figures where more is better
    /// from the top, names and numbers from A and 1.
    pub fn natural_direction(self) -> Direction {
        match self {
            SortKey::Id | SortKey::Moniker | SortKey::Layer | SortKey::Margin | SortKey::Cost => {
                Direction::Asc
            }
            _ => Direction::Desc,
        }
    }
}

/// Ascending or descending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

impl Direction {
    /// Its name in query strings.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Asc => "asc",
            Direction::Desc => "desc",
        }
    }
}

/// How a table is sorted and filtered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableQuery {
    /// The column.
    pub sort: SortKey,
    /// The direction.
    pub dir: Direction,
    /// Only this layer's nodes (mix nodes).
    pub layer: Option<u8>,
    /// Only active (`Some(true)`) or inactive (`Some(false)`) nodes.
    pub active: Option<bool>,
    /// Only nodes whose moniker contains this, whose number it is, or (from 4 characters)
    /// whose identity or owner key contains it; case-insensitive.
    pub search: String,
}

impl Default for TableQuery {
    fn default() -> Self {
        TableQuery {
            sort: SortKey::default(),
            dir: SortKey::default().natural_direction(),
            layer: None,
            active: None,
            search: String::new(),
        }
    }
}

impl TableQuery {
    /// The query of a query string's `(name, value)` pairs: `sort`, `dir` (`asc`, `desc`),
    /// `layer` (1 to 3), `active` (`yes`, `no`), `q`. Values that mean nothing are ignored
    /// (the default stands), so a mistyped link still shows the table.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> TableQuery {
        let mut query = TableQuery::default();
        let mut dir = None;
        for (name, value) in pairs {
            match name {
                "sort" => {
                    if let Some(key) = SortKey::parse(value) {
                        query.sort = key;
                    }
                }
                "dir" => {
                    dir = match value {
                        "asc" => Some(Direction::Asc),
                        "desc" => Some(Direction::Desc),
                        _ => dir,
                    }
                }
                "layer" => query.layer = value.parse().ok().filter(|layer| (1..=3).contains(layer)),
                "active" => {
                    query.active = match value {
                        "yes" | "true" => Some(true),
                        "no" | "false" => Some(false),
                        _ => None,
                    }
                }
                "q" => query.search = value.trim().chars().take(100).collect(),
                _ => {}
            }
        }
        query.dir = dir.unwrap_or(query.sort.natural_direction());
        query
    }

    /// The query string of this query with `sort` by `key`: a click on a column that is
    /// sorted already turns the direction round.
    pub fn sorted_by(&self, key: SortKey) -> TableQuery {
        let dir = if key == self.sort {
            match self.dir {
                Direction::Asc => Direction::Desc,
                Direction::Desc => Direction::Asc,
            }
        } else {
            key.natural_direction()
        };
        TableQuery {
            sort: key,
            dir,
            ..self.clone()
        }
    }

    /// As a query string (without `?`), defaults left out.
    pub fn to_query_string(&self) -> String {
        let mut parts = vec![
            format!("sort={}", self.sort.name()),
            format!("dir={}", self.dir.name()),
        ];
        if let Some(layer) = self.layer {
            parts.push(format!("layer={layer}"));
        }
        if let Some(active) = self.active {
            parts.push(format!("active={}", if active { "yes" } else { "no" }));
        }
        if !self.search.is_empty() {
            parts.push(format!("q={}", crate::query::encode(&self.search)));
        }
        parts.join("&")
    }

    fn keeps(&self, row: &NodeSummary) -> bool {
        if self.layer.is_some() && row.layer != self.layer {
            return false;
        }
        if self.active.is_some_and(|active| active != row.active) {
            return false;
        }
        if self.search.is_empty() {
            return true;
        }
        let needle = self.search.to_lowercase();
        // keys only from 4 characters on: a short needle is in most base58 keys
        row.moniker.to_lowercase().contains(&needle)
            || row.id.to_string() == needle
            || (needle.len() >= 4
                && (row.identity.to_string().to_lowercase().contains(&needle)
                    || row.owner.to_string().to_lowercase().contains(&needle)))
    }
}

/// The table of mix nodes or of gateways.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeTable {
    /// Which kind.
    pub kind: NodeKind,
    /// How it is sorted and filtered.
    pub query: TableQuery,
    /// The rows that pass the filter, sorted.
    pub rows: Vec<NodeSummary>,
    /// How many nodes of the kind there are, filtered or not.
    pub total: usize,
    /// The saturation point (µUMB): stake beyond it earns nothing more.
    pub saturation_point: umbra_ledger::Amount,
    /// Over how many epochs the earnings are averaged, at most.
    pub recent_epochs: usize,
}

impl NodeTable {
    /// The table of the nodes of `kind` in `snapshot`, as `query` says.
    pub fn build(snapshot: &Snapshot, kind: NodeKind, query: TableQuery) -> NodeTable {
        let all: Vec<NodeSummary> = snapshot
            .data
            .nodes
            .iter()
            .filter(|node| node.info.kind == kind)
            .map(|node| NodeSummary::of(snapshot, node))
            .collect();
        let total = all.len();
        let mut rows: Vec<NodeSummary> = all.into_iter().filter(|row| query.keeps(row)).collect();
        sort(&mut rows, query.sort, query.dir);
        NodeTable {
            kind,
            query,
            rows,
            total,
            saturation_point: snapshot.saturation_point(),
            recent_epochs: RECENT_EPOCHS,
        }
    }
}

/// Sorts `rows` by `key` in `dir`; ties by node number, ascending, so the order is stable
/// from one refresh to the next.
pub fn sort(rows: &mut [NodeSummary], key: SortKey, dir: Direction) {
    rows.sort_by(|a, b| {
        let order = match key {
            SortKey::Id => a.id.cmp(&b.id),
            SortKey::Moniker => a.moniker.to_lowercase().cmp(&b.moniker.to_lowercase()),
            // inactive nodes after layer 3 (or after gateways, which have none)
            SortKey::Layer => (a.layer.is_none(), !a.active, a.layer).cmp(&(
                b.layer.is_none(),
                !b.active,
                b.layer,
            )),
            SortKey::Pledge => a.pledge.cmp(&b.pledge),
            SortKey::Delegations => a.delegations.cmp(&b.delegations),
            SortKey::Stake => a.stake.cmp(&b.stake),
            SortKey::Saturation => a.saturation.cmp(&b.saturation),
            SortKey::Margin => a.profit_margin.cmp(&b.profit_margin),
            SortKey::Cost => a.operating_cost.cmp(&b.operating_cost),
            SortKey::Performance => a.performance.cmp(&b.performance),
            SortKey::Earnings => a.earnings_per_thousand.cmp(&b.earnings_per_thousand),
        };
        let order = match dir {
            Direction::Asc => order,
            Direction::Desc => order.reverse(),
        };
        order.then(a.id.cmp(&b.id))
    });
}

#[cfg(test)]
mod tests {
    use umbra_ledger::{Amount, NodeId};

    use super::*;
    use crate::model::fixture;

    fn ids(table: &NodeTable) -> Vec<u32> {
        table.rows.iter().map(|row| row.id.0).collect()
    }

    #[test]
    fn the_query_string_is_read_and_written_back() {
        let query = TableQuery::from_pairs([
            ("sort", "performance"),
            ("dir", "asc"),
            ("layer", "2"),
            ("active", "yes"),
            ("q", "alice"),
        ]);
        assert_eq!(query.sort, SortKey::Performance);
        assert_eq!(query.dir, Direction::Asc);
        assert_eq!(query.layer, Some(2));
        assert_eq!(query.active, Some(true));
        assert_eq!(
            query.to_query_string(),
            "sort=performance&dir=asc&layer=2&active=yes&q=alice"
        );
        // nonsense is ignored, and a column sorts first in its natural direction
        let query = TableQuery::from_pairs([("sort", "bogus"), ("layer", "9"), ("dir", "up")]);
        assert_eq!(query, TableQuery::default());
        assert_eq!(TableQuery::default().dir, Direction::Desc);
        let by_margin = TableQuery::default().sorted_by(SortKey::Margin);
        assert_eq!(by_margin.dir, Direction::Asc);
        assert_eq!(by_margin.sorted_by(SortKey::Margin).dir, Direction::Desc);
    }

    #[test]
    fn the_table_holds_the_ledgers_figures() {
        let snapshot = fixture::snapshot();
        let table = NodeTable::build(&snapshot, NodeKind::Mix, TableQuery::default());
        assert_eq!(table.total, 4);
        for row in &table.rows {
            let node = snapshot.node(row.id).unwrap();
            assert_eq!(row.pledge, node.pledge);
            assert_eq!(row.delegations, node.delegations);
            assert_eq!(row.stake, node.stake);
            assert_eq!(row.performance, node.performance);
            assert_eq!(row.profit_margin, node.profit_margin);
            assert_eq!(row.operating_cost, node.operating_cost);
        }
        // by stake, largest first: node 1 (1,309.06 UMB), 2 (1,000), 3 (500.9), 4 (100)
        assert_eq!(ids(&table), [1, 2, 3, 4]);
        let first = &table.rows[0];
        // saturation point 10,000 UMB: 1,309.06 UMB is 13.0906 %
        assert_eq!(first.saturation, 130_906);
        assert_eq!(first.layer, Some(1));
    }

    #[test]
    fn the_table_sorts_and_filters() {
        let snapshot = fixture::snapshot();
        let table = |pairs: &[(&str, &str)]| {
            NodeTable::build(
                &snapshot,
                NodeKind::Mix,
                TableQuery::from_pairs(pairs.iter().copied()),
            )
        };
        assert_eq!(
            ids(&table(&[("sort", "performance"), ("dir", "asc")])),
            [3, 1, 2, 4]
        );
        assert_eq!(ids(&table(&[("sort", "moniker")])), [1, 2, 3, 4]);
        assert_eq!(ids(&table(&[("layer", "2")])), [2]);
        assert_eq!(ids(&table(&[("active", "no")])), [4]);
        assert_eq!(ids(&table(&[("q", "BOB")])), [2]);
        assert_eq!(ids(&table(&[("q", "3")])), [3]);
        assert_eq!(
            ids(&table(&[("sort", "layer"), ("dir", "asc")])),
            [1, 2, 3, 4]
        );
        let gateways = NodeTable::build(&snapshot, NodeKind::Gateway, TableQuery::default());
        assert_eq!(ids(&gateways), [5]);
    }

    #[test]
    fn earnings_are_the_delegators_payout_per_thousand_averaged() {
        let snapshot = fixture::snapshot();
        let table = NodeTable::build(&snapshot, NodeKind::Mix, TableQuery::default());
        let row = |id: u32| table.rows.iter().find(|row| row.id == NodeId(id)).unwrap();
        // node 1: delegators got 3 UMB on 300 UMB in epoch 1 and 6.06 UMB on 303 UMB in epoch 2:
        // 10 and 20 UMB per 1,000, 15 on average
        assert_eq!(row(1).earnings_per_thousand, Some(Amount(15_000_000)));
        assert_eq!((row(1).recent_active_epochs, row(1).recent_epochs), (2, 2));
        // node 3: active in epoch 2 only, 0.9 UMB on 300 UMB: 3 UMB per 1,000 then, 1.5 on average
        assert_eq!(row(3).earnings_per_thousand, Some(Amount(1_500_000)));
        assert_eq!(row(3).recent_active_epochs, 1);
        // node 4: never active
        assert_eq!(row(4).earnings_per_thousand, Some(Amount::ZERO));
        // node 2 had no delegations: the formula says what a sole 1,000 UMB would have got
        assert!(row(2).earnings_per_thousand.unwrap() > Amount::ZERO);
        let by_earnings = NodeTable::build(
            &snapshot,
            NodeKind::Mix,
            TableQuery::from_pairs([("sort", "earnings")]),
        );
        let earnings: Vec<Amount> = by_earnings
            .rows
            .iter()
            .map(|row| row.earnings_per_thousand.unwrap())
            .collect();
        assert!(
            earnings.windows(2).all(|pair| pair[0] >= pair[1]),
            "{earnings:?}"
        );
        assert_eq!(ids(&by_earnings).last(), Some(&4));
    }
}
