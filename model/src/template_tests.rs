//! Rendering and checking of config templates: each variable, the members list as placement
//! changes, strict undefined, syntax errors with their line.

use super::*;

fn member(node: &str, address: &str, slot: u32, healthy: bool) -> Member {
    Member {
        node: node.into(),
        address: address.into(),
        host: host_of(address),
        slot,
        healthy,
    }
}

fn vars() -> TemplateVars {
    TemplateVars {
        node: NodeVars {
            name: "n2".into(),
            address: "10.0.0.2:7001".into(),
            host: "10.0.0.2".into(),
            labels: [("zone".to_string(), "b".to_string())].into(),
            role: "worker".into(),
        },
        task_slot: 2,
        task_id: "t-42".into(),
        service_name: "db".into(),
        service_version: 3,
        stack: "openstack".into(),
        members: [(
            "db".to_string(),
            vec![
                member("n1", "10.0.0.1:7001", 1, true),
                member("n2", "10.0.0.2:7001", 2, true),
                member("n3", "10.0.0.3:7001", 3, false),
            ],
        )]
        .into(),
    }
}

#[test]
fn node_variables() {
    let out = render(
        "{{ node.name }} {{ node.address }} {{ node.host }} {{ node.labels.zone }} {{ node.role }}",
        &vars(),
    )
    .unwrap();
    assert_eq!(out, "n2 10.0.0.2:7001 10.0.0.2 b worker");
}

#[test]
fn task_service_and_stack_variables() {
    let out = render(
        "{{ task.slot }}/{{ task.id }} {{ service.name }}@{{ service.version }} {{ stack }}\n",
        &vars(),
    )
    .unwrap();
    assert_eq!(out, "2/t-42 db@3 openstack\n");
}

#[test]
fn members_build_a_galera_cluster_address() {
    let text = "wsrep_cluster_address = gcomm://{{ members(\"db\") | map(attribute=\"host\") | join(\",\") }}";
    let out = render(text, &vars()).unwrap();
    assert_eq!(
        out,
        "wsrep_cluster_address = gcomm://10.0.0.1,10.0.0.2,10.0.0.3"
    );
    let each =
        "{% for m in members(\"db\") %}{{ m.node }}:{{ m.slot }}:{{ m.healthy }} {% endfor %}";
    assert_eq!(
        render(each, &vars()).unwrap(),
        "n1:1:True n2:2:True n3:3:False "
    );
}

#[test]
fn members_follow_placement_changes() {
    let text = "{{ members(\"db\") | map(attribute=\"address\") | join(\",\") }}";
    let mut v = vars();
    let before = render(text, &v).unwrap();
    // Slot 3 moves from n3 to n4: the rendering changes with it.
    v.members.get_mut("db").unwrap()[2] = member("n4", "10.0.0.4:7001", 3, true);
    let after = render(text, &v).unwrap();
    assert_eq!(before, "10.0.0.1:7001,10.0.0.2:7001,10.0.0.3:7001");
    assert_eq!(after, "10.0.0.1:7001,10.0.0.2:7001,10.0.0.4:7001");
    // A service with no live task renders an empty list.
    v.members.insert("cache".into(), vec![]);
    assert_eq!(
        render("[{{ members(\"cache\") | join(\",\") }}]", &v).unwrap(),
        "[]"
    );
}

#[test]
fn unknown_names_are_errors_not_empty_strings() {
    let e = render("a\n{{ nodes.name }}", &vars()).unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = render("{{ node.nmae }}", &vars()).unwrap_err();
    assert!(e.message.contains("undefined"), "{e}");
    let e = render("{{ members(\"nope\") }}", &vars()).unwrap_err();
    assert!(e.message.contains("no service `nope`"), "{e}");
}

#[test]
fn check_reports_syntax_errors_and_unknown_variables_with_their_line() {
    assert_eq!(check("x = {{ node.name }}\n{% for m in members(\"db\") %}{{ m.host }}{% endfor %}\n{{ range(3) | join }}"), Ok(()));
    let e = check("a\nb = {{ node.name \n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("syntax error"), "{e}");
    let e = check("a\nb\nc = {{ hostname }}\n").unwrap_err();
    assert_eq!(e.line, Some(3));
    assert_eq!(
        e.to_string(),
        "line 3: unknown variable `hostname` (known: node, task, service, stack, members)"
    );
}

#[test]
fn host_of_strips_the_port() {
    assert_eq!(host_of("10.0.0.1:7001"), "10.0.0.1");
    assert_eq!(host_of("[fd00::1]:7001"), "fd00::1");
    assert_eq!(host_of("db-1"), "db-1");
}
