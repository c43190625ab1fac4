//! SPEC §12 ▲ keyset pagination (decision 0007 "Filters, order, pages"): newest first (creation
//! time descending, then id descending), a cursor after the last item, never offsets.

use std::cmp::Reverse;
use std::str::FromStr;
use std::time::Duration;

use instore::{
    Cursor, GroupBy, InstanceFilter, InstanceId, InstanceStore, OwnerId, PageRequest, StoreError,
    Timestamp, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};

use super::{all, idle, saved};
use crate::harness::*;

/// Creates `n` instances, moving the clock one second after every second one (so pairs share a
/// creation time and the id breaks the tie); returns them in query order, newest first.
async fn created(env: &Env, store: &InstanceStore, owner: OwnerId, n: usize) -> Vec<InstanceId> {
    let mut made: Vec<(Timestamp, InstanceId)> = Vec::new();
    for i in 0..n {
        let at = env.now();
        made.push((at, saved(store, owner, idle()).await));
        if i % 2 == 1 {
            env.clock.advance(Duration::from_secs(1));
        }
    }
    made.sort_by_key(|m| Reverse(*m));
    made.into_iter().map(|(_, id)| id).collect()
}

/// Reads every page of `size` items of `filter`: the pages' ids.
async fn pages(env: &Env, filter: &InstanceFilter, size: usize) -> Vec<Vec<InstanceId>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = env
            .query()
            .query(filter, &PageRequest { max: size, cursor })
            .await
            .expect("query");
        assert!(page.items.len() <= size);
        pages.push(page.items.iter().map(|i| i.id).collect());
        match page.next {
            Some(next) => {
                let last = page.items.last().expect("a page with a next is not empty");
                assert_eq!((next.created_at, next.id), (last.created_at, last.id));
                cursor = Some(next);
            }
            None => return pages,
        }
    }
}

/// SPEC §12 ▲: pages of 3 over 10 instances (some created at the same instant) cover every
/// instance exactly once, newest first (creation time, then id, descending); the last page has
/// no next cursor, also when it ends exactly at the last instance.
pub async fn pages_of_three_cover_ten_instances_exactly_once_newest_first(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let want = created(env, &store, owner, 10).await;
    let got = pages(env, &all(), 3).await;
    let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![3, 3, 3, 1]);
    assert_eq!(got.concat(), want);
    let got = pages(env, &all(), 5).await;
    let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![5, 5], "no empty page after an exact fit");
    assert_eq!(got.concat(), want);
}

/// SPEC §12 ▲: an instance created (or deleted) after the first page was read does not shift
/// the later pages: they hold exactly the instances that followed the first page.
pub async fn an_instance_created_after_the_first_page_does_not_shift_later_pages(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let want = created(env, &store, owner, 10).await;
    let first = env
        .query()
        .query(&all(), &PageRequest::first(3))
        .await
        .expect("first page");
    let first_ids: Vec<InstanceId> = first.items.iter().map(|i| i.id).collect();
    assert_eq!(first_ids, want[..3].to_vec());

    env.clock.advance(Duration::from_secs(1));
    let newer = saved(&store, owner, idle()).await;
    env.control().delete(want[0]).await.expect("delete");

    let mut rest = Vec::new();
    let mut cursor = first.next;
    while let Some(c) = cursor {
        let page = env
            .query()
            .query(
                &all(),
                &PageRequest {
                    max: 3,
                    cursor: Some(c),
                },
            )
            .await
            .expect("page");
        rest.extend(page.items.iter().map(|i| i.id));
        cursor = page.next;
    }
    assert_eq!(rest, want[3..].to_vec());
    assert!(!rest.contains(&newer));
}

/// SPEC §12: a cursor this store did not hand out, a page size outside 1..=1000 and an
/// invalid filter are `Invalid` (for query, count and group count alike); cursors print and
/// parse back unchanged.
pub async fn a_bad_cursor_page_size_or_filter_is_invalid(env: &Env) {
    for bad in [
        "",
        "x",
        "c",
        "c12",
        "c12_",
        "cx_00000000-0000-0000-0000-000000000001",
        "c12_nope",
    ] {
        assert_err!(Cursor::from_str(bad), StoreError::Invalid { .. });
    }
    let cursor = Cursor {
        created_at: env.now(),
        id: InstanceId::new(),
    };
    assert_eq!(
        Cursor::from_str(&cursor.to_string()).expect("parses"),
        cursor
    );

    for max in [0, MAX_PAGE_SIZE + 1] {
        let page = PageRequest { max, cursor: None };
        assert_err!(
            env.query().query(&all(), &page).await,
            StoreError::Invalid { .. }
        );
    }
    env.query()
        .query(&all(), &PageRequest::first(MAX_PAGE_SIZE))
        .await
        .expect("1000 is allowed");

    let t = env.now();
    let bad_filters = [
        InstanceFilter {
            created_after: Some(t),
            created_before: Some(t),
            ..all()
        },
        InstanceFilter {
            modified_after: Some(t.plus(Duration::from_secs(1))),
            modified_before: Some(t),
            ..all()
        },
        InstanceFilter {
            exception: Some(String::new()),
            ..all()
        },
        InstanceFilter {
            promoted: vec![(String::new(), "1".into())],
            ..all()
        },
        InstanceFilter {
            ids: (0..=MAX_PAGE_SIZE).map(|_| InstanceId::new()).collect(),
            ..all()
        },
    ];
    for filter in &bad_filters {
        let q = env.query();
        assert_err!(
            q.query(filter, &PageRequest::default()).await,
            StoreError::Invalid { .. }
        );
        assert_err!(q.count(filter).await, StoreError::Invalid { .. });
        assert_err!(
            q.group_count(filter, GroupBy::Status).await,
            StoreError::Invalid { .. }
        );
    }
}

/// SPEC §12: a page holds 50 items unless asked otherwise.
pub async fn the_default_page_size_is_fifty(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    for _ in 0..51 {
        saved(&store, owner, idle()).await;
    }
    assert_eq!(DEFAULT_PAGE_SIZE, 50);
    let first = env
        .query()
        .query(&all(), &PageRequest::default())
        .await
        .expect("query");
    assert_eq!(first.items.len(), 50);
    let next = PageRequest {
        cursor: first.next,
        ..PageRequest::default()
    };
    assert!(next.cursor.is_some());
    let second = env.query().query(&all(), &next).await.expect("query");
    assert_eq!((second.items.len(), second.next), (1, None));
}

/// Lists this module's cases for [`crate::provider_tests!`] (through `query_cases!`).
#[doc(hidden)]
#[macro_export]
macro_rules! query_pages_cases {
    ($make:path) => {
        $crate::__case!(
            $make,
            query::pages_of_three_cover_ten_instances_exactly_once_newest_first
        );
        $crate::__case!(
            $make,
            query::an_instance_created_after_the_first_page_does_not_shift_later_pages
        );
        $crate::__case!($make, query::a_bad_cursor_page_size_or_filter_is_invalid);
        $crate::__case!($make, query::the_default_page_size_is_fifty);
    };
}
