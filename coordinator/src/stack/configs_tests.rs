//! Stack file tests for `configs:`: each source, references in short and long form, and a table
//! of malformed files.

use shoal_model::config::config_ref;

use super::*;

#[test]
fn reads_every_source_and_both_reference_forms() {
    let stack = parse_stack(
        "stack.yaml",
        r#"
configs:
  keystone.conf: { file: ./keystone.conf }
  galera.cnf:
    environment: GALERA_CNF
    x-shoal-template: true
  haproxy.cfg:
    content: |
      global
        maxconn 4000
  db_url:
    content: "mysql://db"
    x-shoal-sensitive: true
services:
  keystone:
    image: x
    configs: [keystone.conf]
  db:
    image: x
    configs:
      - source: galera.cnf
        target: /etc/mysql/conf.d/galera.cnf
        uid: "999"
        gid: 999
        mode: 0440
      - source: haproxy.cfg
        target: haproxy.cfg
      - source: db_url
        target: /etc/db/url
        mode: "0o400"
"#,
    )
    .expect("valid stack");
    let decl = |n: &str| stack.configs[n].clone();
    assert_eq!(
        decl("keystone.conf").source,
        ValueSource::File("./keystone.conf".into())
    );
    assert_eq!(
        decl("galera.cnf").source,
        ValueSource::Environment("GALERA_CNF".into())
    );
    assert_eq!(
        decl("haproxy.cfg").source,
        ValueSource::Content("global\n  maxconn 4000\n".into())
    );
    assert!(!decl("haproxy.cfg").sensitive);
    assert!(decl("db_url").sensitive);
    assert!(decl("galera.cnf").template);
    assert!(!decl("haproxy.cfg").template);
    let refs = |name: &str| {
        stack
            .services
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.container.configs.clone())
            .expect("service")
    };
    // Short form: Compose's defaults, `/<name>` and 0444.
    assert_eq!(refs("keystone"), vec![config_ref("keystone.conf")]);
    assert_eq!(refs("keystone")[0].container_path(), "/keystone.conf");
    let db = refs("db");
    assert_eq!(
        (db[0].target.as_str(), db[0].uid, db[0].gid, db[0].mode),
        ("/etc/mysql/conf.d/galera.cnf", 999, 999, 0o440)
    );
    // A bare file name as target lands at the root, as in Swarm.
    assert_eq!(
        (db[1].container_path().as_str(), db[1].mode),
        ("/haproxy.cfg", 0o444)
    );
    assert_eq!(db[2].mode, 0o400);
    assert!(db.iter().all(|r| r.version == 0));
    // Configs and secrets are separate name spaces.
    assert!(stack.secrets.is_empty());
}

const MALFORMED: &[super::tests::Malformed] = &[
    // 1. a service references an undeclared config
    ("services:\n  a:\n    image: x\n    configs: [c]\n", 4, 15, "services.a.configs[0]", "config `c` is not declared in the top-level `configs`"),
    // 2. a secret is not a config
    ("secrets:\n  c: { file: f }\nservices:\n  a:\n    image: x\n    configs: [c]\n", 6, 15, "services.a.configs[0]", "config `c` is not declared"),
    // 3. no source
    ("configs:\n  c: {}\nservices: {}\n", 2, 6, "configs.c", "expected `file`, `environment` or `content`"),
    // 4. two sources
    ("configs:\n  c:\n    file: f\n    content: x\nservices: {}\n", 4, 14, "configs.c", "not two"),
    // 5. content is not a string
    ("configs:\n  c:\n    content: [a]\nservices: {}\n", 3, 14, "configs.c.content", "expected a string"),
    // 6. Compose's `external` is not supported
    ("configs:\n  c:\n    external: true\nservices: {}\n", 3, 5, "configs.c", "expected `file`"),
    // 7. unknown key in a declaration
    ("configs:\n  c:\n    content: x\n    name: y\nservices: {}\n", 4, 5, "configs.c.name", "unknown or unsupported key"),
    // 8. unknown key in a reference
    ("configs:\n  c: { content: x }\nservices:\n  a:\n    image: x\n    configs:\n      - { source: c, owner: me }\n", 7, 22, "services.a.configs[0].owner", "unknown or unsupported key"),
    // 9. a declaration that is a string
    ("configs:\n  c: ./f\nservices: {}\n", 2, 6, "configs.c", "expected a mapping"),
    // 10. the service's configs is a mapping
    ("configs:\n  c: { content: x }\nservices:\n  a:\n    image: x\n    configs: { c: {} }\n", 6, 14, "services.a.configs", "expected a list"),
    // 11. target escaping with ..
    ("configs:\n  c: { content: x }\nservices:\n  a:\n    image: x\n    configs:\n      - { source: c, target: /etc/../passwd }\n", 7, 9, "services.a.configs[0]", "must be a file name (under /)"),
    // 12. two configs on one path
    ("configs:\n  c: { content: x }\n  d: { content: y }\nservices:\n  a:\n    image: x\n    configs:\n      - { source: c, target: /etc/x }\n      - { source: d, target: /etc/x }\n", 9, 9, "services.a.configs[1]", "two configs mount at /etc/x"),
    // 13. missing source
    ("configs:\n  c: { content: x }\nservices:\n  a:\n    image: x\n    configs:\n      - { target: /x }\n", 7, 9, "services.a.configs[0]", "missing required key `source`"),
    // 14. mode above 0777
    ("configs:\n  c: { content: x }\nservices:\n  a:\n    image: x\n    configs:\n      - { source: c, mode: 1777 }\n", 7, 28, "services.a.configs[0].mode", "at most 0777"),
    // 15. bad gid
    ("configs:\n  c: { content: x }\nservices:\n  a:\n    image: x\n    configs:\n      - { source: c, gid: wheel }\n", 7, 27, "services.a.configs[0].gid", "numeric id"),
    // 16. x-shoal-sensitive that is not a boolean
    ("configs:\n  c:\n    content: x\n    x-shoal-sensitive: maybe\nservices: {}\n", 4, 24, "configs.c.x-shoal-sensitive", "expected true or false"),
    // 17. bad config name
    ("configs:\n  \"a b\": { content: x }\nservices: {}\n", 2, 3, "configs.a b", "invalid name"),
    // 18. empty file
    ("configs:\n  c: { file: \"\" }\nservices: {}\n", 2, 14, "configs.c.file", "must not be empty"),
    // 19. a list entry that is a number
    ("configs:\n  c: { content: x }\nservices:\n  a:\n    image: x\n    configs: [3]\n", 6, 15, "services.a.configs[0]", "expected a config name or a mapping"),
    // 20. a template with a syntax error: the content's position and the template's line
    ("configs:\n  c:\n    content: \"a\\n{{ node.name \"\n    x-shoal-template: true\nservices: {}\n", 3, 14, "configs.c.content", "template line 2: syntax error"),
    // 21. so are change modes
    ("configs:\n  c:\n    content: x\n    x-shoal-change-mode: noop\nservices: {}\n", 4, 26, "configs.c.x-shoal-change-mode", "not supported yet"),
    // 22. a template reading an unknown variable
    ("configs:\n  c:\n    content: \"{{ hostname }}\"\n    x-shoal-template: true\nservices: {}\n", 3, 14, "configs.c.content", "template line 1: unknown variable `hostname`"),
    // 23. x-shoal-template that is not a boolean
    ("configs:\n  c:\n    content: x\n    x-shoal-template: yes please\nservices: {}\n", 4, 23, "configs.c.x-shoal-template", "expected true or false"),
    // 24. Compose's template_driver
    ("configs:\n  c:\n    content: x\n    template_driver: golang\nservices: {}\n", 4, 5, "configs.c.template_driver", "unknown or unsupported key"),
];

#[test]
fn malformed_configs_name_file_line_column_and_key() {
    super::tests::check_malformed(MALFORMED);
}
