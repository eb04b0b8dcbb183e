//! Cluster mode's cluster-wide views: `/ws/clients` and `/websocket/stats` asked of one node
//! are asked of every other live node too (`Output::Gather`), and their answers merged here
//! with this node's own (pure, so the merge is tested without a cluster). Each client is
//! listed with the tag of the node holding it; counts are summed; a node that did not answer
//! is named, and the view says it is partial.

use super::*;
use crate::broker::NodePart;

/// Which view a gathered request asks for.
#[derive(Clone, Copy, Debug)]
pub(super) enum View {
    Clients,
    Stats,
}

impl View {
    pub(super) fn of(command: &Command) -> Option<View> {
        match command {
            Command::ListClients => Some(View::Clients),
            Command::Stats => Some(View::Stats),
            _ => None,
        }
    }
}

impl Engine {
    /// The other nodes answered (or not): this node's view merged with theirs.
    pub(super) fn on_gathered(
        &mut self,
        now: Time,
        request: RequestId,
        parts: Vec<NodePart>,
        error: Option<String>,
    ) {
        let Some((route, view)) = self.cluster.gathers.remove(&request) else {
            return;
        };
        let local = match view {
            View::Clients => self.clients_report(now),
            View::Stats => self.status_json(now, false),
        };
        let own = self.node_tag().unwrap_or_default();
        let merged = merge(view, own, local, parts, error);
        self.answer(request, Some(route), Ok(Outcome::Report { report: merged }));
    }
}

fn tag_name(tag: u16) -> String {
    format!("{tag:04x}")
}

/// This node's view merged with the other nodes' answers.
pub(super) fn merge(
    view: View,
    own: u16,
    mut local: Value,
    parts: Vec<NodePart>,
    error: Option<String>,
) -> Value {
    let mut nodes = vec![json!({"node": tag_name(own), "ok": true})];
    let mut answers = vec![(own, local.clone())];
    for part in parts {
        let parsed = part.answer.and_then(|body| {
            serde_json::from_str::<Value>(&body)
                .map_err(|e| format!("not a JSON answer: {e}"))
                .and_then(|value| match value["success"] == true {
                    true => Ok(value),
                    false => Err(format!("refused: {value}")),
                })
        });
        match parsed {
            Ok(value) => {
                nodes.push(json!({"node": tag_name(part.node), "ok": true}));
                answers.push((part.node, value));
            }
            Err(why) => nodes.push(json!({"node": tag_name(part.node), "ok": false, "error": why})),
        }
    }
    let partial = error.is_some() || nodes.iter().any(|n| n["ok"] == false);
    match view {
        View::Clients => {
            let mut clients: Vec<Value> = Vec::new();
            for (node, answer) in &answers {
                for client in answer["clients"].as_array().into_iter().flatten() {
                    let mut client = client.clone();
                    client["node"] = Value::from(tag_name(*node));
                    clients.push(client);
                }
            }
            // Oldest first, as on one node (timestamps are RFC 3339 UTC, so they sort as text).
            clients.sort_by(|a, b| {
                let key = |c: &Value| c["connected_at"].as_str().unwrap_or_default().to_string();
                key(a).cmp(&key(b))
            });
            local["count"] = Value::from(clients.len());
            local["clients"] = Value::Array(clients);
        }
        View::Stats => {
            for field in [
                "total_clients",
                "messages_published",
                "messages_delivered",
                "messages_dropped",
                "messages_undelivered",
                "evictions",
            ] {
                let sum: u64 = answers.iter().filter_map(|(_, a)| a[field].as_u64()).sum();
                local[field] = Value::from(sum);
            }
            for field in ["clients_by_type", "clients_by_transport", "channels"] {
                let mut sums: BTreeMap<String, u64> = BTreeMap::new();
                for (_, answer) in &answers {
                    for (key, count) in answer[field].as_object().into_iter().flatten() {
                        *sums.entry(key.clone()).or_default() += count.as_u64().unwrap_or(0);
                    }
                }
                local[field] = json!(sums);
            }
        }
    }
    local["nodes"] = Value::Array(nodes);
    local["partial"] = Value::from(partial);
    if let Some(error) = error {
        local["error"] = Value::from(format!(
            "the other nodes could not be listed: {error}; this is one node's view"
        ));
    }
    local
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(node: u16, body: Value) -> NodePart {
        NodePart {
            node,
            answer: Ok(body.to_string()),
        }
    }

    #[test]
    fn clients_of_every_node_are_listed_with_their_node_oldest_first() {
        let local = json!({"success": true, "count": 1, "clients": [
            {"id": "a", "connected_at": "2026-12-01T10:00:02.000Z"}]});
        let other = json!({"success": true, "count": 1, "clients": [
            {"id": "b", "connected_at": "2026-12-01T10:00:01.000Z"}]});
        let down = NodePart {
            node: 3,
            answer: Err("connection refused".to_string()),
        };
        let merged = merge(View::Clients, 1, local, vec![part(2, other), down], None);
        assert_eq!(merged["count"], 2);
        assert_eq!(merged["clients"][0]["id"], "b");
        assert_eq!(merged["clients"][0]["node"], "0002");
        assert_eq!(merged["clients"][1]["node"], "0001");
        assert_eq!(merged["partial"], true);
        assert_eq!(merged["nodes"][2]["error"], "connection refused");
    }

    #[test]
    fn stats_are_summed_over_the_nodes_that_answered() {
        let one = json!({"success": true, "total_clients": 2, "messages_published": 5,
                         "clients_by_type": {"gui": 2}, "channels": {"jobs": 2},
                         "history": {"jobs": {"offset": 5}}});
        let two = json!({"success": true, "total_clients": 3, "messages_published": 5,
                         "clients_by_type": {"gui": 1, "web": 2}, "channels": {"jobs": 1}});
        let merged = merge(View::Stats, 1, one, vec![part(2, two)], None);
        assert_eq!(merged["total_clients"], 5);
        assert_eq!(merged["messages_published"], 10);
        assert_eq!(merged["clients_by_type"], json!({"gui": 3, "web": 2}));
        assert_eq!(merged["channels"], json!({"jobs": 3}));
        assert_eq!(
            merged["history"]["jobs"]["offset"], 5,
            "history is the same everywhere"
        );
        assert_eq!(merged["partial"], false);
        let alone = merge(
            View::Stats,
            1,
            json!({"success": true, "total_clients": 2}),
            vec![],
            Some("Redis unreachable".to_string()),
        );
        assert_eq!(alone["partial"], true);
        assert!(
            alone["error"]
                .as_str()
                .unwrap()
                .contains("Redis unreachable")
        );
    }
}
