//! The changelog join row by row: an outer side's NULL-padded row deleted when its first
//! partner comes and inserted again when its last one goes, retractions of either input, and
//! semi and anti joins whose left rows enter and leave the result.

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::ChangelogJoinOperator;
use crate::changelog::RowKind;
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;
use weir_planner::stream_plan::JoinNode;

const TABLES: &str = "
    CREATE TABLE a (k STRING, v BIGINT) WITH ('connector' = 'kafka', 'topic' = 'a',
      'properties.bootstrap.servers' = 'localhost:9092', 'format' = 'json');
    CREATE TABLE b (k STRING, w BIGINT) WITH ('connector' = 'kafka', 'topic' = 'b',
      'properties.bootstrap.servers' = 'localhost:9092', 'format' = 'json');";

fn join_node(query: &str) -> JoinNode {
    super::super::planned(&format!("{TABLES} {query}"), |n| match n {
        weir_planner::StreamNode::Join(j) => Some(j.clone()),
        _ => None,
    })
}

/// One row `(k, v)` of an input with kind `kind`.
fn row(node: &JoinNode, side: usize, kind: RowKind, k: &str, v: i64) -> StreamBatch {
    let schema = [&node.left, &node.right][side].schema();
    super::super::test_rows(schema, &[(k, v)]).with_kinds(vec![kind as i8])
}

/// What the operator emits for one row, as `+I x,1,x,10` lines.
fn feed(op: &mut ChangelogJoinOperator, side: usize, b: StreamBatch) -> Vec<String> {
    let mut out = Vec::new();
    op.process_input(side, b, &mut out).unwrap();
    let opts = FormatOptions::default().with_null("null");
    let mut lines = Vec::new();
    for m in out {
        let Message::Batch(b) = m else { continue };
        let fmts: Vec<ArrayFormatter> = b
            .batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        let kinds = b.kinds.expect("a changelog");
        for (i, kind) in kinds.iter().enumerate() {
            let values: Vec<String> = fmts.iter().map(|f| f.value(i).to_string()).collect();
            lines.push(format!(
                "{} {}",
                RowKind::from_i8(*kind).short(),
                values.join(",")
            ));
        }
    }
    lines
}

#[test]
fn a_left_joins_padded_row_leaves_with_the_first_partner_and_comes_back_after_the_last() {
    let node = join_node("SELECT * FROM a LEFT JOIN b ON a.k = b.k;");
    assert!(
        node.changelog,
        "b does not end: the LEFT join is a changelog"
    );
    let mut op = ChangelogJoinOperator::new(&node, [None; 2], || 0).unwrap();
    let (ins, del) = (RowKind::Insert, RowKind::Delete);
    let steps: Vec<(usize, StreamBatch, Vec<&str>)> = vec![
        (0, row(&node, 0, ins, "x", 1), vec!["+I x,1,null,null"]),
        (
            1,
            row(&node, 1, ins, "x", 10),
            vec!["-D x,1,null,null", "+I x,1,x,10"],
        ),
        (1, row(&node, 1, ins, "x", 20), vec!["+I x,1,x,20"]),
        (1, row(&node, 1, del, "x", 10), vec!["-D x,1,x,10"]),
        (
            1,
            row(&node, 1, del, "x", 20),
            vec!["-D x,1,x,20", "+I x,1,null,null"],
        ),
        (0, row(&node, 0, del, "x", 1), vec!["-D x,1,null,null"]),
        (1, row(&node, 1, ins, "x", 30), vec![]),
        (0, row(&node, 0, ins, "x", 2), vec!["+I x,2,x,30"]),
    ];
    for (n, (side, batch, want)) in steps.into_iter().enumerate() {
        assert_eq!(feed(&mut op, side, batch), want, "step {n}");
    }
}

#[test]
fn an_updating_input_gives_its_kinds_to_the_pairs() {
    let node = join_node(
        "SELECT a.k, a.n, b.w FROM (SELECT k, COUNT(*) AS n FROM a GROUP BY k) AS a
         JOIN b ON a.k = b.k;",
    );
    assert!(node.changelog);
    let mut op = ChangelogJoinOperator::new(&node, [None; 2], || 0).unwrap();
    assert_eq!(
        feed(&mut op, 1, row(&node, 1, RowKind::Insert, "x", 10)),
        Vec::<String>::new()
    );
    let up = |kind, n| row(&node, 0, kind, "x", n);
    assert_eq!(
        feed(&mut op, 0, up(RowKind::Insert, 1)),
        vec!["+I x,1,x,10"]
    );
    assert_eq!(
        feed(&mut op, 0, up(RowKind::UpdateBefore, 1)),
        vec!["-U x,1,x,10"]
    );
    assert_eq!(
        feed(&mut op, 0, up(RowKind::UpdateAfter, 2)),
        vec!["+U x,2,x,10"]
    );
}

#[test]
fn semi_and_anti_joins_left_rows_follow_their_partners() {
    let (ins, del) = (RowKind::Insert, RowKind::Delete);
    let semi = join_node("SELECT * FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.k = a.k);");
    let anti = join_node("SELECT * FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.k = a.k);");
    assert!(
        anti.changelog,
        "b does not end: the anti join is a changelog"
    );
    for (node, want) in [
        (
            &semi,
            [vec![], vec!["+I x,1"], vec![], vec![], vec!["-D x,1"]],
        ),
        (
            &anti,
            [
                vec!["+I x,1"],
                vec!["-D x,1"],
                vec![],
                vec![],
                vec!["+I x,1"],
            ],
        ),
    ] {
        let mut op = ChangelogJoinOperator::new(node, [None; 2], || 0).unwrap();
        let steps = [
            (0, row(node, 0, ins, "x", 1)),
            (1, row(node, 1, ins, "x", 10)),
            (1, row(node, 1, ins, "x", 20)),
            (1, row(node, 1, del, "x", 10)),
            (1, row(node, 1, del, "x", 20)),
        ];
        for (n, ((side, batch), want)) in steps.into_iter().zip(want).enumerate() {
            assert_eq!(feed(&mut op, side, batch), want, "{:?} step {n}", node.kind);
        }
    }
}

static NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn fake_clock() -> u64 {
    NOW.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn a_state_ttl_hint_drops_one_inputs_idle_keys() {
    let node = join_node("SELECT /*+ STATE_TTL('a' = '100 ms') */ * FROM a JOIN b ON a.k = b.k;");
    assert_eq!(
        node.state_ttl,
        [Some(100_000_000), None],
        "{}",
        node.describe()
    );
    let mut op = ChangelogJoinOperator::new(&node, [Some(100), None], fake_clock).unwrap();
    let ins = RowKind::Insert;
    assert!(feed(&mut op, 0, row(&node, 0, ins, "x", 1)).is_empty());
    assert!(feed(&mut op, 1, row(&node, 1, ins, "y", 5)).is_empty());
    assert_eq!(
        feed(&mut op, 1, row(&node, 1, ins, "x", 10)),
        vec!["+I x,1,x,10"]
    );
    NOW.store(1_000, std::sync::atomic::Ordering::Relaxed);
    // `a`'s key went idle and is dropped; `b`'s rows stay.
    assert!(feed(&mut op, 1, row(&node, 1, ins, "x", 20)).is_empty());
    assert_eq!(op.counts().expired_keys, Some(1));
    assert_eq!(
        feed(&mut op, 0, row(&node, 0, ins, "y", 2)),
        vec!["+I y,2,y,5"]
    );
}

#[test]
fn a_restored_join_holds_the_rows_and_their_partner_counts() {
    let node = join_node("SELECT * FROM a FULL JOIN b ON a.k = b.k;");
    let (ins, del) = (RowKind::Insert, RowKind::Delete);
    let mut op = ChangelogJoinOperator::new(&node, [None; 2], || 0).unwrap();
    feed(&mut op, 0, row(&node, 0, ins, "x", 1));
    feed(&mut op, 1, row(&node, 1, ins, "x", 10));
    feed(&mut op, 1, row(&node, 1, ins, "z", 30));
    let mut state = crate::state::MemoryBackend::default();
    op.snapshot(&mut state).unwrap();
    let mut restored = ChangelogJoinOperator::new(&node, [None; 2], || 0).unwrap();
    restored.restore(&state).unwrap();
    assert_eq!(restored.state_size().keys, op.state_size().keys);
    // `b`'s x row has one partner: taking `a`'s row back pads it again.
    assert_eq!(
        feed(&mut restored, 0, row(&node, 0, del, "x", 1)),
        vec!["-D x,1,x,10", "+I null,null,x,10"]
    );
    // `b`'s z row has none: its first partner deletes its padded row.
    assert_eq!(
        feed(&mut restored, 0, row(&node, 0, ins, "z", 3)),
        vec!["-D null,null,z,30", "+I z,3,z,30"]
    );
}
