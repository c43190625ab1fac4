//! The dashboard's pages carry the stable hooks the browser test and people rely on.

mod common;

use axum::http::StatusCode;
use common::{fixture, get};

#[tokio::test]
async fn the_instance_list_page_has_the_filters_the_table_and_the_dialog() {
    let f = fixture().await;
    let a = get(&f.router(), "/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.content_type.starts_with("text/html"));
    for hook in [
        r#"data-page="instances""#,
        r#"<select id="filter-status">"#,
        r#"<option value="Suspended">Suspended</option>"#,
        r#"id="filter-condition""#,
        r#"id="filter-host-type""#,
        r#"id="apply-filters""#,
        r#"<tbody id="instance-rows">"#,
        r#"id="next-page""#,
        r#"id="counts-chart""#,
        r#"<dialog id="confirm-dialog">"#,
        r#"id="confirm-yes""#,
        r#"id="confirm-no""#,
        r#"id="token-input""#,
        r#"<script src="/assets/dashboard.js">"#,
    ] {
        assert!(a.text.contains(hook), "{hook} missing");
    }
}

#[tokio::test]
async fn the_detail_page_is_served_for_valid_ids_only() {
    let f = fixture().await;
    let r = f.router();
    let a = get(&r, &format!("/instances/{}", f.suspended)).await;
    assert_eq!(a.status, StatusCode::OK);
    for hook in [
        "detail-status",
        "detail-blocked-on",
        "detail-pending",
        "detail-error",
        "detail-promoted",
        "detail-keys",
        "detail-bookmarks",
        "detail-timer",
        "detail-actions",
    ] {
        assert!(a.text.contains(&format!("id=\"{hook}\"")), "{hook} missing");
    }
    assert!(a
        .text
        .contains(&format!("data-instance-id=\"{}\"", f.suspended)));
    let a = get(&r, "/instances/%3Cscript%3E").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_script_knows_the_actions_and_the_api() {
    let f = fixture().await;
    let a = get(&f.router(), "/assets/dashboard.js").await;
    assert!(a.content_type.starts_with("text/javascript"));
    for hook in [
        "data-action",
        "\"resume\"",
        "/api/v1/instances",
        "sessionStorage",
        "Bearer ",
        "confirm-yes",
    ] {
        assert!(a.text.contains(hook), "{hook} missing");
    }
    let css = get(&f.router(), "/assets/dashboard.css").await;
    assert!(css.content_type.starts_with("text/css"));
}
