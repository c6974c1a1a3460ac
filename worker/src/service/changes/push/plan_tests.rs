use super::*;

fn change(seq: i64) -> Pending {
    Pending {
        seq,
        committed_at: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(seq),
        body: format!("{{\"seq\":{seq}}}").into_bytes(),
    }
}

fn limits(batch: usize, per_org: usize, total: usize) -> Limits {
    Limits {
        batch,
        per_org,
        total,
    }
}

fn seqs(b: &Batch) -> Vec<i64> {
    let v: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect()
}

#[test]
fn organizations_are_handed_their_batches_in_seq_order_two_ahead_at_most() {
    let mut plan = Plan::new(0, [], limits(2, 100, 1000));
    for (seq, org) in [
        (1, "a"),
        (2, "b"),
        (3, "a"),
        (4, "a"),
        (5, "b"),
        (6, "a"),
        (7, "a"),
    ] {
        plan.offer(org, change(seq));
    }
    let first = plan.next_batches(10);
    let got: Vec<(&str, Vec<i64>)> = first
        .iter()
        .map(|b| (b.organization_id.as_str(), seqs(b)))
        .collect();
    // a: two batches ahead ([1, 3], then [4, 6]); [7] waits for an answer. b: [2, 5].
    assert_eq!(
        got,
        vec![("a", vec![1, 3]), ("a", vec![4, 6]), ("b", vec![2, 5])]
    );
    assert_eq!(first[0].webhook_id(), "batch_1_3_a");
    assert_eq!(plan.in_flight(), 2);
    assert!(plan.next_batches(10).is_empty());
    assert_eq!(plan.floor(), 0);
    plan.delivered("b", 5);
    assert_eq!(plan.floor(), 0);
    plan.delivered("a", 3);
    assert_eq!(plan.floor(), 3, "a still has 4, 6 and 7");
    // [7] alone is not a full batch: it waits until [4, 6] is answered.
    assert!(plan.next_batches(10).is_empty());
    plan.delivered("a", 6);
    let next = plan.next_batches(10);
    assert_eq!(seqs(&next[0]), vec![7]);
    plan.delivered("a", 7);
    assert_eq!(plan.floor(), 7);
    assert_eq!(plan.oldest_undelivered(), None);
    assert!(!plan.is_in_flight("a"));
}

#[test]
fn room_limits_concurrency_and_the_oldest_organizations_go_first() {
    let mut plan = Plan::new(0, [], limits(10, 100, 1000));
    for (seq, org) in [(1, "c"), (2, "a"), (3, "b")] {
        plan.offer(org, change(seq));
    }
    let got = plan.next_batches(2);
    let orgs: Vec<&str> = got.iter().map(|b| b.organization_id.as_str()).collect();
    assert_eq!(orgs, ["c", "a"]);
    assert_eq!(plan.in_flight(), 2);
    assert_eq!(
        plan.oldest_undelivered(),
        Some(DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(1))
    );
}

#[test]
fn stored_positions_skip_what_was_delivered_before_a_crash() {
    // The last leader delivered a through 3, b nothing; the floor it stored was 1.
    let mut plan = Plan::new(1, [("a".to_owned(), 3)], limits(10, 100, 1000));
    for (seq, org) in [(2, "a"), (3, "a"), (4, "b"), (5, "a")] {
        plan.offer(org, change(seq));
    }
    let got = plan.next_batches(10);
    let by_org: HashMap<&str, Vec<i64>> = got
        .iter()
        .map(|b| (b.organization_id.as_str(), seqs(b)))
        .collect();
    assert_eq!(by_org["a"], vec![5]);
    assert_eq!(by_org["b"], vec![4]);
}

#[test]
fn a_full_organization_is_refilled_from_the_table_without_a_gap() {
    let mut plan = Plan::new(0, [], limits(2, 3, 1000));
    for seq in 1..=8 {
        plan.offer("a", change(seq));
    }
    plan.offer("b", change(9));
    assert_eq!(plan.scanned(), 9);
    // a kept 1..3; 4..8 were not kept.
    let mut delivered = Vec::new();
    loop {
        for (org, after, through) in plan.refills() {
            assert_eq!(org, "a");
            let rows = ((after + 1)..=through.min(8)).take(3).map(change).collect();
            plan.refill(&org, rows, through);
        }
        let batches = plan.next_batches(10);
        if batches.is_empty() {
            break;
        }
        for b in batches {
            if b.organization_id == "a" {
                delivered.extend(seqs(&b));
            }
            plan.delivered(&b.organization_id, b.last);
        }
    }
    assert_eq!(delivered, (1..=8).collect::<Vec<_>>());
    assert_eq!(plan.floor(), 9);
}

#[test]
fn the_total_bound_truncates_instead_of_growing() {
    let mut plan = Plan::new(0, [], limits(10, 100, 4));
    for seq in 1..=10 {
        plan.offer(if seq % 2 == 0 { "a" } else { "b" }, change(seq));
    }
    assert!(!plan.wants_more());
    // Floor stays below the first change not delivered.
    assert_eq!(plan.floor(), 0);
    // Less than two batches queued: read ahead, after what each queued.
    let mut refills = plan.refills();
    refills.sort();
    assert_eq!(
        refills,
        vec![("a".to_owned(), 4, 10), ("b".to_owned(), 3, 10)]
    );
    for b in plan.next_batches(10) {
        plan.delivered(&b.organization_id, b.last);
    }
    assert!(plan.wants_more());
}

#[test]
fn rows_for_nobody_still_raise_the_floor() {
    let mut plan = Plan::new(5, [], limits(10, 100, 1000));
    plan.pass(9);
    assert_eq!(plan.floor(), 9);
}

#[test]
fn keeps_says_what_offer_would_keep() {
    let mut plan = Plan::new(0, [("a".to_owned(), 5)], limits(10, 2, 1000));
    assert!(!plan.keeps("a", 5), "delivered");
    assert!(plan.keeps("a", 6));
    assert!(plan.keeps("new", 1));
    plan.offer("a", change(6));
    plan.offer("a", change(7));
    assert!(!plan.keeps("a", 8), "a is full");
    plan.skip("a", 8);
    // Truncated with less than two batches queued: read ahead from the last queued.
    assert_eq!(plan.refills(), vec![("a".to_owned(), 7, 8)]);
    let b = plan.next_batches(1);
    assert_eq!(seqs(&b[0]), vec![6, 7]);
    plan.refill("a", vec![change(8)], 8);
    plan.delivered("a", b[0].last);
    assert_eq!(seqs(&plan.next_batches(1)[0]), vec![8]);
}
