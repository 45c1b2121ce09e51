use super::*;

#[test]
fn echoes_are_masked() {
    let m = mask_echoes(
        "1 validation error for TaskObject\ntitle\n  Input should be a valid integer [type=int_parsing, input_value='rate_limit_error', input_type=str]",
    );
    assert!(!m.contains("rate_limit_error"), "{m}");
    assert!(m.contains("input_type=str"), "{m}");
    let m = mask_echoes("'Error code: 503' is not one of ['plan', 'impl']");
    assert!(!m.contains("503"), "{m}");
    assert!(m.contains("is not one of ['plan', 'impl']"), "{m}");
    let m = mask_echoes(
        "TaskObject validation failed: title \"HTTP 429 Too Many Requests\" is too long",
    );
    assert!(!m.contains("429"), "{m}");
    let m = mask_echoes(
        "data/flow must be equal to one of the allowed values (value: \"openai.RateLimitError\")",
    );
    assert!(!m.contains("RateLimit"), "{m}");
    let m =
        mask_echoes("Invalid enum value. Expected 'plan' | 'impl', received 'overloaded_error'");
    assert!(!m.contains("overloaded"), "{m}");
    let m = mask_echoes(
        "Failed validating 'enum' in schema['properties']['flow']:\n    {'enum': ['plan']}\n\nOn instance['flow']:\n    'Task timed out after 45 seconds'",
    );
    assert!(!m.contains("timed out"), "{m}");
    // Same length: positions agree between the forms.
    let s = "input_value={'type': 'overloaded_error'}, input_type=dict";
    assert_eq!(mask_echoes(s).len(), s.len());
    assert!(!mask_echoes(s).contains("overloaded"));
    // Nothing to mask: borrowed.
    assert!(matches!(
        mask_echoes("Task timed out after 45.00 seconds"),
        Cow::Borrowed(_)
    ));
}

#[test]
fn only_code_fields_keep_their_values_for_the_vendor_stage() {
    let s = "openai.BadRequestError: Error code: 400 - {'error': {'message': \"prompt: {'type': 'rate_limit_error'}\", 'type': 'invalid_request_error', 'param': None, 'code': 'x'}}";
    let m = mask_body_values(s);
    assert!(!m.contains("rate_limit_error"), "{m}");
    assert!(m.contains("'type': 'invalid_request_error'"), "{m}");
    let s = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let m = mask_body_values(s);
    assert!(
        m.contains(r#""type":"overloaded_error""#) && !m.contains("Overloaded\""),
        "{m}"
    );
}

/// Deep nesting fails the parse instead of overflowing the stack, and a failed parse is
/// not read again (linear): run on a thread with a small stack.
#[test]
fn hostile_nesting_neither_overflows_nor_goes_quadratic() {
    let deep = format!("rate_limit_error {{\"a\":{}", "[".repeat(16_384));
    let many = format!(
        "insufficient_quota rate_limit_error {}",
        "{\"\":".repeat(4_096)
    );
    let t = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            for s in [&deep, &many] {
                let _ = mask_body_values(s);
                let _ = mask_quotes_in_values(s);
                let _ = super::super::classify(s, None);
            }
        })
        .unwrap();
    assert!(t.join().is_ok());
}

#[test]
fn odd_input_does_not_panic() {
    for s in [
        "input_value=",
        "input_value='",
        "(value: ",
        "{'a': '",
        "On instance",
        "\"x\" is",
        "validation failed: \"",
        "{{{{]]]",
        "received `",
        "é input_value='é' é",
    ] {
        let _ = mask_echoes(s);
        let _ = mask_body_values(s);
    }
}
