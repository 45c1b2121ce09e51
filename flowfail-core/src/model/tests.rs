use super::*;

#[test]
fn task_id_accepts_runbook_ids_and_rejects_hostile_ones() {
    for ok in ["t-00000", "a", "A_b-9", &"x".repeat(64)] {
        assert!(TaskId::parse(ok).is_ok(), "{ok}");
    }
    let long = "x".repeat(10_000);
    for bad in [
        "",
        "../x",
        "a/b",
        "%2F",
        "a%2Fb",
        "'",
        "\"q\"",
        "a\0b",
        "a\nb",
        "\u{1b}[31m",
        "-a",
        "_a",
        &"x".repeat(65),
        &long,
        "a b",
        "é",
    ] {
        assert!(TaskId::parse(bad).is_err(), "{bad:?}");
    }
    let e = TaskId::parse(&long).unwrap_err();
    assert!(e.to_string().len() < 200, "error message stays short");
    assert!(
        !TaskId::parse("a\u{1b}[31m")
            .unwrap_err()
            .to_string()
            .contains('\u{1b}')
    );
}

proptest::proptest! {
    #[test]
    fn task_id_validation_is_exactly_the_pattern(s in "\\PC{0,70}|[A-Za-z0-9][A-Za-z0-9_-]{0,70}") {
        let re = regex::Regex::new("^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$").unwrap();
        proptest::prop_assert_eq!(TaskId::parse(&s).is_ok(), re.is_match(&s));
    }

    #[test]
    fn hostile_fragments_are_always_rejected(
        head in "[A-Za-z0-9]{1,20}",
        bad in proptest::sample::select(vec!["../x", "a/b", "%2F", "'", "\"", "\0", "\n", "\r", "\u{1b}[31m", " ", "\\", ";", "é"]),
        tail in "[A-Za-z0-9]{0,20}",
    ) {
        let candidate = format!("{head}{bad}{tail}");
        proptest::prop_assert!(TaskId::parse(&candidate).is_err(), "{:?}", candidate);
    }
}

#[test]
fn byte_size_units() {
    let p = |s: &str| s.parse::<ByteSize>().map(ByteSize::bytes);
    assert_eq!(p("180KB").unwrap(), 180_000);
    assert_eq!(p("180KiB").unwrap(), 184_320);
    assert_eq!(p("500KB").unwrap(), 500_000);
    assert_eq!(p("5MB").unwrap(), 5_000_000);
    assert_eq!(p("1MiB").unwrap(), 1_048_576);
    assert_eq!(p("1.5KB").unwrap(), 1500);
    assert_eq!(p("42").unwrap(), 42);
    assert!(p("").is_err());
    assert!(p("KB").is_err());
    assert!(p("10XB").is_err());
    assert!(p("99999999999999999999GB").is_err());
    assert_eq!(ByteSize::kb(180).to_string(), "180KB");
    let v: ByteSize = serde_json::from_str("\"180KiB\"").unwrap();
    assert_eq!(v.bytes(), 184_320);
}

#[test]
fn task_ids_are_extracted_from_log_lines() {
    let id = |m: &str| extract_task_id(m).map(|t| t.to_string());
    assert_eq!(
        id("ERROR t-00000 Task timed out").as_deref(),
        Some("t-00000")
    );
    assert_eq!(id("task_id=abc_9 failed").as_deref(), Some("abc_9"));
    assert_eq!(id(r#"{"task_id":"t-7","x":1}"#).as_deref(), Some("t-7"));
    assert_eq!(id("ERROR no id here"), None);
    assert_eq!(id("task_id=../../etc"), None);
}

#[test]
fn vendor_health_parses_statuspage_and_incident_io() {
    assert_eq!(
        VendorHealth::from_status("full_outage"),
        VendorHealth::MajorOutage
    );
    assert_eq!(VendorHealth::from_status("weird"), VendorHealth::Unknown);
    assert!(!VendorHealth::Unknown.is_degraded());
    assert!(!VendorHealth::Unknown.is_operational());
}
