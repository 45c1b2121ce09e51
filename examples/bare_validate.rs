//! The floor for P3 in `docs/BENCHMARKS.md`: a bare, single-threaded jsonschema-rs validator
//! over TaskObject files — read, parse, `is_valid`, count. No reports, no version logic.
//!
//! ```bash
//! cargo run --release --example bare_validate -- /tmp/taskobjects/*.json
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema: serde_json::Value =
        serde_json::from_str(flowfail::schema::TASK_OBJECT_V2).map_err(|e| e.to_string())?;
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| e.to_string())?;
    let (mut valid, mut invalid) = (0u64, 0u64);
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        if validator.is_valid(&value) {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    println!("valid {valid} invalid {invalid}");
    Ok(())
}
