#!/usr/bin/env python3
"""Writes testdata/corpus/adversarial/: failure messages that echo tenant input, crossed with
the words a tenant could plant in it (vendor codes, statuses, timeout phrases, exception names),
and genuine vendor errors that quote a prompt. Each entry is labelled with what the failure
really is; `cargo test -p flowfail-core --test it adversarial::` requires that none is steered.

Run from the repository root: python3 scripts/adversarial-corpus.py
"""
import json
import os

# What a tenant can write into a title, a flow name, a prompt: the words of every other branch.
PAYLOADS = [
    "rate_limit_error",
    "overloaded_error",
    "RESOURCE_EXHAUSTED",
    "ThrottlingException",
    "insufficient_quota",
    "Error code: 503",
    "HTTP 429 Too Many Requests",
    "502 Bad Gateway",
    "Task timed out after 45.00 seconds",
    "context deadline exceeded",
    "openai.RateLimitError",
    "httpx.ReadTimeout",
    "anthropic.InternalServerError: Error code: 500",
    "An error occurred (ThrottlingException) when calling the InvokeModel operation",
]

# (family, provenance, template); {p} is the tenant's text. All are validation failures.
ECHOES = [
    ("pydantic", "pydantic v2 int_parsing, input_value echoes the title",
     "1 validation error for TaskObject\ntitle\n  Input should be a valid integer, unable to parse string as an integer [type=int_parsing, input_value='{p}', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.9/v/int_parsing"),
    ("pydantic", "pydantic_core ValidationError enum, input_value echoes the flow",
     "pydantic_core._pydantic_core.ValidationError: 1 validation error for TaskObject\nflow\n  Input should be 'plan', 'impl', 'review' or 'docs' [type=enum, input_value='{p}', input_type=str]"),
    ("pydantic", "pydantic v2, a dict input_value shaped like a vendor error body",
     "2 validation errors for TaskObject\ninputs\n  Input should be a valid string [type=string_type, input_value={{'type': 'error', 'error': {{'type': 'rate_limit_error', 'message': '{p}'}}}}, input_type=dict]\npriority\n  Input should be less than or equal to 10 [type=less_than_equal, input_value=429, input_type=int]"),
    ("jsonschema", "python jsonschema enum, with the instance block",
     "jsonschema.exceptions.ValidationError: '{p}' is not one of ['plan', 'impl', 'review', 'docs']\n\nFailed validating 'enum' in schema['properties']['flow']:\n    {{'enum': ['plan', 'impl', 'review', 'docs']}}\n\nOn instance['flow']:\n    '{p}'"),
    ("jsonschema", "python jsonschema type, the message alone",
     "'{p}' is not of type 'integer'"),
    ("jsonschema", "python jsonschema pattern, the message alone",
     "'{p}' does not match '^[a-z0-9-]{{1,64}}$'"),
    ("jsonschema-rs", "jsonschema-rs enum",
     "\"{p}\" is not one of [\"plan\",\"impl\",\"review\",\"docs\"]"),
    ("jsonschema-rs", "jsonschema-rs maxLength",
     "\"{p}\" is longer than 16 characters"),
    ("ajv", "ajv enum with the value (verbose errors)",
     "data/flow must be equal to one of the allowed values (value: \"{p}\")"),
    ("ajv", "ajv maxLength inside FlowEngine's TaskObject check",
     "TaskObject invalid: data/title must NOT have more than 16 characters (value: \"{p}\")"),
    ("zod", "ZodError issues array",
     "ZodError: [\n  {{\n    \"received\": \"{p}\",\n    \"code\": \"invalid_enum_value\",\n    \"options\": [\n      \"plan\",\n      \"impl\"\n    ],\n    \"path\": [\n      \"flow\"\n    ],\n    \"message\": \"Invalid enum value. Expected 'plan' | 'impl', received '{p}'\"\n  }}\n]"),
    ("zod", "zod enum message alone",
     "Invalid enum value. Expected 'plan' | 'impl' | 'review' | 'docs', received '{p}'"),
    ("flowengine", "FlowEngine validation line, value first",
     "validation failed: \"{p}\" is not a valid flow type"),
    ("flowengine", "FlowEngine TaskObject check of the title",
     "TaskObject validation failed: title \"{p}\" exceeds 200 characters"),
    ("flowengine", "FlowEngine log line with its invalid-TaskObject message",
     "2026-11-13T09:50:01Z ERROR plan flow t-4821: invalid TaskObject: unknown flow_type '{p}'"),
    ("serde", "serde_json unknown variant",
     "unknown variant `{p}`, expected one of `plan`, `impl`, `review`, `docs` at line 1 column 38"),
    ("serde", "serde_json invalid type",
     "invalid type: string \"{p}\", expected u32 at line 1 column 42"),
]

# Genuine vendor errors that quote the tenant's prompt: the vendor's error decides.
VENDOR = [
    ("vendor-quoting-prompt", "anthropic 400, the prompt quoted in the message", "unknown", None,
     "anthropic.BadRequestError: Error code: 400 - {{'type': 'error', 'error': {{'type': 'invalid_request_error', 'message': 'prompt is too long: 215000 tokens > 200000 maximum; prompt begins \"validation failed: {p}\"'}}}}"),
    ("vendor-quoting-prompt", "openai 400, message before type, quoting the content", "unknown", 400,
     "openai.BadRequestError: Error code: 400 - {{'error': {{'message': \"Invalid 'messages[0].content': string too long. Content begins: '1 validation error for TaskObject {p}'\", 'type': 'invalid_request_error', 'param': 'messages[0].content', 'code': 'string_above_max_length'}}}}"),
    ("vendor-quoting-prompt", "openai 429 whose message quotes the prompt", "rate_limit", None,
     "openai.RateLimitError: Error code: 429 - {{'error': {{'message': \"Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29544, Requested 1200. Prompt: 'is not one of [plan] {p}'\", 'type': 'tokens', 'param': None, 'code': 'rate_limit_exceeded'}}}}"),
    ("vendor-quoting-prompt", "anthropic overloaded body quoting the prompt", "model_api_5xx", 529,
     "{{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded while processing: validation failed: {p}\"}}}}"),
    ("vendor-quoting-prompt", "google ResourceExhausted quoting the request", "rate_limit", None,
     "google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model with base model: gemini-1.5-pro. Request text: \"{p} is not of type 'integer'\""),
    ("vendor-quoting-prompt", "bedrock throttling quoting the input", "rate_limit", None,
     "botocore.errorfactory.ThrottlingException: An error occurred (ThrottlingException) when calling the InvokeModel operation: Too many tokens, please wait before trying again. Input: \"validation failed: {p}\""),
]


def main():
    out_dir = os.path.join("testdata", "corpus", "adversarial")
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    for family, provenance, template in ECHOES:
        for p in PAYLOADS:
            files.setdefault(family, []).append({
                "family": family,
                "provenance": provenance,
                "planted": p,
                "message": template.format(p=p),
                "expect": "validation",
            })
    for family, provenance, expect, status, template in VENDOR:
        for p in PAYLOADS:
            e = {
                "family": family,
                "provenance": provenance,
                "planted": p,
                "message": template.format(p=p),
                "expect": expect,
            }
            if status is not None:
                e["status"] = status
            files.setdefault(family, []).append(e)
    for family, entries in files.items():
        with open(os.path.join(out_dir, family + ".jsonl"), "w") as f:
            for e in entries:
                f.write(json.dumps(e) + "\n")
    print(sum(len(v) for v in files.values()), "messages in", len(files), "families")


if __name__ == "__main__":
    main()
