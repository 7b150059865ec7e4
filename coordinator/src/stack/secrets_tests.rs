//! Stack file tests for `secrets:`: declarations, references in short and long form, and a table
//! of malformed files.

use shoal_model::SecretRef;

use super::*;

#[test]
fn reads_declarations_and_references() {
    let stack = parse_stack(
        "stack.yaml",
        r#"
secrets:
  db_password: { file: ./db_password.txt }
  api_token:
    environment: API_TOKEN
services:
  db:
    image: x
    secrets: [db_password]
  api:
    image: x
    secrets:
      - source: db_password
        target: /etc/api/db.pw
        uid: "1000"
        gid: 1000
        mode: 0440
      - source: api_token
        target: token
        mode: "0o600"
      - source: api_token
        target: token2
        mode: 0o640
      - source: api_token
        target: token3
        mode: 444
"#,
    )
    .expect("valid stack");
    assert_eq!(
        stack.secrets["db_password"],
        SecretSource::File("./db_password.txt".into())
    );
    assert_eq!(
        stack.secrets["api_token"],
        SecretSource::Environment("API_TOKEN".into())
    );
    let refs = |name: &str| {
        stack
            .services
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.container.secrets.clone())
            .expect("service")
    };
    assert_eq!(refs("db"), vec![SecretRef::new("db_password")]);
    let api = refs("api");
    assert_eq!(api.len(), 4);
    assert_eq!((api[2].mode, api[3].mode), (0o640, 0o444));
    assert_eq!(
        (api[0].target.as_str(), api[0].uid, api[0].gid, api[0].mode),
        ("/etc/api/db.pw", 1000, 1000, 0o440)
    );
    assert_eq!(api[1].container_path(), "/run/secrets/token");
    assert_eq!(api[1].mode, 0o600);
    // The parser never stamps versions: the state machine does, from the values it holds.
    assert!(api.iter().all(|r| r.version == 0));
}

const MALFORMED: &[super::tests::Malformed] = &[
    // 1. a service references an undeclared secret
    ("services:\n  a:\n    image: x\n    secrets: [pw]\n", 4, 15, "services.a.secrets[0]", "secret `pw` is not declared"),
    // 2. undeclared, long form
    ("secrets:\n  pw: { file: f }\nservices:\n  a:\n    image: x\n    secrets:\n      - source: other\n", 7, 9, "services.a.secrets[0]", "secret `other` is not declared"),
    // 3. unknown key in a declaration (Compose's `external` is not supported)
    ("secrets:\n  pw:\n    file: f\n    external: true\nservices: {}\n", 4, 5, "secrets.pw.external", "unknown or unsupported key"),
    // 4. unknown key in a reference
    ("secrets:\n  pw: { file: f }\nservices:\n  a:\n    image: x\n    secrets:\n      - { source: pw, owner: me }\n", 7, 23, "services.a.secrets[0].owner", "unknown or unsupported key"),
    // 5. declaration with neither file nor environment
    ("secrets:\n  pw: {}\nservices: {}\n", 2, 7, "secrets.pw", "expected `file` or `environment`"),
    // 6. both file and environment
    ("secrets:\n  pw: { file: f, environment: E }\nservices: {}\n", 2, 31, "secrets.pw", "not two"),
    // 7. wrong type: file is a number
    ("secrets:\n  pw: { file: 3 }\nservices: {}\n", 2, 15, "secrets.pw.file", "expected a string"),
    // 8. wrong type: the service's secrets is a mapping
    ("secrets:\n  pw: { file: f }\nservices:\n  a:\n    image: x\n    secrets: { pw: {} }\n", 6, 14, "services.a.secrets", "expected a list"),
    // 9. wrong type: a declaration that is a string
    ("secrets:\n  pw: ./f\nservices: {}\n", 2, 7, "secrets.pw", "expected a mapping"),
    // 10. mode with a non-octal digit
    ("secrets:\n  pw: { file: f }\nservices:\n  a:\n    image: x\n    secrets:\n      - { source: pw, mode: 0489 }\n", 7, 29, "services.a.secrets[0].mode", "octal"),
    // 11. target escaping with ..
    ("secrets:\n  pw: { file: f }\nservices:\n  a:\n    image: x\n    secrets:\n      - { source: pw, target: ../etc/passwd }\n", 7, 9, "services.a.secrets[0]", "must be a file name"),
    // 12. two secrets on one path
    ("secrets:\n  pw: { file: f }\n  pw2: { file: g }\nservices:\n  a:\n    image: x\n    secrets:\n      - pw\n      - { source: pw2, target: pw }\n", 9, 9, "services.a.secrets[1]", "two secrets mount at /run/secrets/pw"),
    // 13. missing source in the long form
    ("secrets:\n  pw: { file: f }\nservices:\n  a:\n    image: x\n    secrets:\n      - { target: pw }\n", 7, 9, "services.a.secrets[0]", "missing required key `source`"),
    // 14. bad secret name
    ("secrets:\n  \"a b\": { file: f }\nservices: {}\n", 2, 3, "secrets.a b", "invalid name"),
    // 15. bad uid
    ("secrets:\n  pw: { file: f }\nservices:\n  a:\n    image: x\n    secrets:\n      - { source: pw, uid: root }\n", 7, 28, "services.a.secrets[0].uid", "numeric id"),
];

#[test]
fn malformed_secrets_name_file_line_and_key() {
    super::tests::check_malformed(MALFORMED);
}
