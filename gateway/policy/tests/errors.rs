//! Every refusal names `file:line: field: message`; these tests pin the exact text an admin sees.
#![allow(clippy::unwrap_used)] // reason: test code

mod common;

use common::{BASE, compile_in, edit, err};

#[test]
fn base_policy_compiles() {
    let c = common::compile_text(BASE).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn unknown_fields() {
    assert_eq!(
        err(&edit(
            BASE,
            "version = \"1\"\n",
            "version = \"1\"\nowner = \"x\"\n"
        )),
        "p.toml:4: policy.owner: unknown field `owner`, expected one of `name`, `version`, `description`"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "protocol = \"tcp\"\n",
            "protocol = \"tcp\"\nport = 443\n"
        )),
        "p.toml:23: shared_system.allow.port: unknown field `port`, expected one of `from`, `protocol`, `ports`, `description`"
    );
    assert_eq!(
        err(&format!("{BASE}mystery = 1\n")),
        "p.toml:31: blocklist.mystery: unknown field `mystery`, expected `prefixes` or `except`"
    );
    assert_eq!(
        err(&format!("[logging]\nlevel = 1\n{BASE}")),
        "p.toml:1: logging: unknown field `logging`, expected one of `policy`, `zones`, `shared_system`, `isolated`, `feed`, `blocklist`, `defaults`, `telemetry`, `management`, `domain_feed`, `domains`"
    );
}

#[test]
fn schema_and_syntax_errors() {
    assert_eq!(
        err(&edit(
            BASE,
            "prefixes = [\"10.200.1.10/32\", \"fd00:200:1::10/128\"]\n",
            ""
        )),
        "p.toml:16: shared_system.prefixes: missing field `prefixes`"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "hosts = [\"10.10.0.3/32\"]",
            "hosts = [\"10.10.0.3/32\", 7]"
        )),
        "p.toml:27: isolated.hosts: invalid type: integer `7`, expected a string"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "hosts = [\"10.10.0.3/32\"]",
            "hosts = [\"10.10.0.3/32\""
        )),
        "p.toml:29: syntax: invalid array; expected `]`"
    );
}

#[test]
fn bad_cidrs() {
    assert_eq!(
        err(&edit(
            BASE,
            "\"10.10.0.0/24\", \"fd00:10::/64\"]\n\n[zones.ded",
            "\"10.10.0.0/33\", \"fd00:10::/64\"]\n\n[zones.ded"
        )),
        "p.toml:7: zones.lan.prefixes: \"10.10.0.0/33\" has a prefix length beyond the address width"
    );
    assert_eq!(
        err(&edit(BASE, "\"fd00:200::/32\"", "\"fd00:200:/32\"")),
        "p.toml:11: zones.dedicated.prefixes: \"fd00:200:/32\" is not an IP address or CIDR"
    );
    assert_eq!(
        err(&edit(BASE, "[\"10.200.1.10/32\"", "[\"10.200.1.10/24\"")),
        "p.toml:18: shared_system.prefixes: \"10.200.1.10/24\" has host bits set; the network is 10.200.1.0/24 (or give the host as /32)"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "hosts = [\"10.10.0.3/32\"]",
            "hosts = [\n  \"10.10.0.3/32\",\n  \"fd00:10::3/64\",\n]"
        )),
        "p.toml:29: isolated.hosts: \"fd00:10::3/64\" has host bits set; the network is fd00:10::/64 (or give the host as /128)"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "[\"203.0.113.66/32\"]",
            "[\"203.0.113.66/32\", \"bad\"]"
        )),
        "p.toml:30: blocklist.prefixes: \"bad\" is not an IP address or CIDR"
    );
    assert_eq!(
        err(&format!("{BASE}except = [\"11.0.0.0/7\"]\n")),
        "p.toml:31: blocklist.except: \"11.0.0.0/7\" has host bits set; the network is 10.0.0.0/7 (or give the host as /32)"
    );
}

#[test]
fn duplicate_names() {
    let second = "[[shared_system]]\nname = \"db\"\nprefixes = [\"10.200.9.0/24\"]\n\n[[isolated]]";
    assert_eq!(
        err(&edit(BASE, "[[isolated]]", second)),
        "p.toml:26: shared_system.name: duplicate shared system name \"db\" (first at line 17)"
    );
    let iso = format!("{BASE}\n[[isolated]]\nname = \"secret\"\nhosts = [\"10.10.0.4/32\"]\n");
    assert_eq!(
        err(&iso),
        "p.toml:33: isolated.name: duplicate isolated class name \"secret\" (first at line 26)"
    );
    let feeds = format!(
        "{BASE}\n[[feed]]\nname = \"a\"\npath = \"a.txt\"\nformat = \"plain\"\n\n[[feed]]\nname = \"a\"\npath = \"b.txt\"\nformat = \"plain\"\n"
    );
    assert_eq!(
        err(&feeds),
        "p.toml:38: feed.name: duplicate feed name \"a\" (first at line 33)"
    );
    assert_eq!(
        err(&edit(BASE, "name = \"db\"", "name = \"national db\"")),
        "p.toml:17: shared_system.name: \"national db\" is not a name (1-64 of A-Z a-z 0-9 - _ .)"
    );
}

#[test]
fn ports_of_rules() {
    assert_eq!(
        err(&edit(BASE, "protocol = \"tcp\"", "protocol = \"icmp\"")),
        "p.toml:23: shared_system.allow.ports: icmp rules take no ports"
    );
    assert_eq!(
        err(&edit(BASE, "protocol = \"tcp\"", "protocol = \"any\"")),
        "p.toml:23: shared_system.allow.ports: any rules take no ports"
    );
    assert_eq!(
        err(&edit(BASE, "ports = [443, \"8000-8080\"]\n", "")),
        "p.toml:22: shared_system.allow.ports: tcp rules need ports (write \"0-65535\" for every port)"
    );
    assert_eq!(
        err(&edit(BASE, "\"8000-8080\"", "\"8080-8000\"")),
        "p.toml:23: shared_system.allow.ports: \"8080-8000\" is a reversed range; write \"8000-8080\""
    );
    assert_eq!(
        err(&edit(BASE, "[443, ", "[70000, ")),
        "p.toml:23: shared_system.allow.ports: 70000 is not a port (0-65535)"
    );
    assert_eq!(
        err(&edit(BASE, "[443, ", "[-1, ")),
        "p.toml:23: shared_system.allow.ports: -1 is not a port (0-65535)"
    );
    assert_eq!(
        err(&edit(BASE, "\"8000-8080\"", "\"8000-65536\"")),
        "p.toml:23: shared_system.allow.ports: \"8000-65536\" is not a port or \"lo-hi\" range of ports 0-65535"
    );
    assert_eq!(
        err(&edit(BASE, "\"8000-8080\"", "\"https\"")),
        "p.toml:23: shared_system.allow.ports: \"https\" is not a port or \"lo-hi\" range of ports 0-65535"
    );
    assert_eq!(
        err(&edit(BASE, "[443, \"8000-8080\"]", "[]")),
        "p.toml:23: shared_system.allow.ports: empty port list"
    );
    assert_eq!(
        err(&edit(BASE, "[443, ", "[4.5, ")),
        "p.toml:23: shared_system.allow.ports: 4.5 is not a port number or a \"lo-hi\" string"
    );
    assert_eq!(
        err(&edit(BASE, "protocol = \"tcp\"", "protocol = \"sctp\"")),
        "p.toml:22: shared_system.allow.protocol: unknown protocol \"sctp\"; expected \"tcp\", \"udp\", \"icmp\" or \"any\""
    );
}

#[test]
fn empty_lists() {
    assert_eq!(
        err(&edit(
            BASE,
            "from = [\"10.10.0.0/24\", \"fd00:10::/64\"]",
            "from = []"
        )),
        "p.toml:21: shared_system.allow.from: an allow rule needs at least one source prefix"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "prefixes = [\"10.200.1.10/32\", \"fd00:200:1::10/128\"]",
            "prefixes = []"
        )),
        "p.toml:18: shared_system.prefixes: a shared system needs prefixes"
    );
    assert_eq!(
        err(&edit(BASE, "hosts = [\"10.10.0.3/32\"]", "hosts = []")),
        "p.toml:27: isolated.hosts: an isolated class needs hosts"
    );
    assert_eq!(
        err(&edit(BASE, "ports = [\"inet0\"]", "ports = []")),
        "p.toml:14: zones.internet.ports: a zone needs at least one port"
    );
}

#[test]
fn overlapping_prefixes() {
    let doc = "[[shared_system]]\nname = \"doc\"\nprefixes = [\"10.200.2.0/24\", \"10.200.1.0/24\"]\n\n[[isolated]]";
    assert_eq!(
        err(&edit(BASE, "[[isolated]]", doc)),
        "p.toml:27: shared_system.prefixes: 10.200.1.0/24 overlaps 10.200.1.10/32 of shared system \"db\" (line 18)"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "[\"10.200.1.10/32\", ",
            "[\"10.200.1.10/32\", \"10.200.1.8/29\", "
        )),
        "p.toml:18: shared_system.prefixes: 10.200.1.8/29 overlaps 10.200.1.10/32 of shared system \"db\" (line 18)"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "[\"10.200.0.0/16\", ",
            "[\"10.200.0.0/16\", \"10.10.0.128/25\", "
        )),
        "p.toml:11: zones.dedicated.prefixes: 10.10.0.128/25 overlaps lan prefix 10.10.0.0/24 (line 7)"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "[\"10.200.1.10/32\", ",
            "[\"10.200.1.10/32\", \"10.10.0.9/32\", "
        )),
        "p.toml:18: shared_system.prefixes: 10.10.0.9/32 overlaps lan prefix 10.10.0.0/24 (line 7); a shared system lies beyond the dedicated port"
    );
}

#[test]
fn too_many_rules_for_one_source() {
    let ports: Vec<String> = (0..17).map(|i| (1000 + 2 * i).to_string()).collect();
    let text = edit(
        BASE,
        "[443, \"8000-8080\"]",
        &format!("[{}]", ports.join(", ")),
    );
    assert_eq!(
        err(&text),
        "p.toml:21: shared_system.allow: shared system \"db\" admits 17 distinct protocol/port rules for source 10.10.0.0/24 (its own and those of covering sources); at most 16 fit — merge ports into ranges"
    );
    // Adjacent ports merge into ranges and fit.
    let ports: Vec<String> = (0..40).map(|i| (1000 + i).to_string()).collect();
    common::compile_text(&edit(
        BASE,
        "[443, \"8000-8080\"]",
        &format!("[{}]", ports.join(", ")),
    ))
    .unwrap();
    // Folding: 10 rules on the /24 plus 7 of its own make 17 for the /25.
    let ten: Vec<String> = (0..10).map(|i| (2000 + 2 * i).to_string()).collect();
    let seven: Vec<String> = (0..7).map(|i| (3000 + 2 * i).to_string()).collect();
    let text = edit(
        BASE,
        "[443, \"8000-8080\"]\n",
        &format!(
            "[{}]\n\n[[shared_system.allow]]\nfrom = [\"10.10.0.0/25\"]\nprotocol = \"udp\"\nports = [{}]\n",
            ten.join(", "),
            seven.join(", ")
        ),
    );
    assert_eq!(
        err(&text),
        "p.toml:26: shared_system.allow: shared system \"db\" admits 17 distinct protocol/port rules for source 10.10.0.0/25 (its own and those of covering sources); at most 16 fit — merge ports into ranges"
    );
}

#[test]
fn zones_and_ports() {
    assert_eq!(
        err(&edit(BASE, "[zones.internet]\nports = [\"inet0\"]\n", "")),
        "p.toml:1: zones.internet: no [zones.internet] section; every role needs a zone"
    );
    assert_eq!(
        err(&edit(BASE, "[zones.internet]", "[zones.wan]")),
        "p.toml:13: zones.wan: unknown role \"wan\"; expected \"lan\", \"dedicated\" or \"internet\""
    );
    assert_eq!(
        err(&edit(BASE, "ports = [\"lan0\"]", "ports = [\"ded0\"]")),
        "p.toml:6: zones.lan.ports: wrong port: \"ded0\" has role dedicated in profile \"lab-veth\", not lan"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "ports = [\"lan0\"]",
            "ports = [\"lan0\", \"eth9\"]"
        )),
        "p.toml:6: zones.lan.ports: wrong port: profile \"lab-veth\" has no port \"eth9\" (it has lan0, ded0, inet0)"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "ports = [\"lan0\"]",
            "ports = [\"lan0\", \"lan0\"]"
        )),
        "p.toml:6: zones.lan.ports: port \"lan0\" is listed twice"
    );
    assert_eq!(
        err(&edit(
            BASE,
            "ports = [\"inet0\"]",
            "ports = [\"inet0\"]\nprefixes = [\"0.0.0.0/0\"]"
        )),
        "p.toml:15: zones.internet.prefixes: the internet zone takes no prefixes: the Internet is every address not named elsewhere"
    );
}

#[test]
fn policy_header_and_defaults() {
    assert_eq!(
        err(&edit(BASE, "version = \"1\"", "version = \"\"")),
        "p.toml:3: policy.version: expected a non-empty string or an integer"
    );
    common::compile_text(&edit(BASE, "version = \"1\"", "version = 7")).unwrap();
    assert_eq!(
        err(&format!("{BASE}\n[defaults]\nfragments = \"reassemble\"\n")),
        "p.toml:33: defaults.fragments: unknown fragment handling \"reassemble\"; expected \"inspect\" or \"drop\""
    );
    assert_eq!(
        err(&edit(BASE, "[policy]\nname = \"t\"\nversion = \"1\"\n", "")),
        "p.toml:1: policy: missing field `policy`"
    );
}

#[test]
fn feed_references() {
    let feed = |path: &str, format: &str| {
        format!("{BASE}\n[[feed]]\nname = \"f\"\npath = \"{path}\"\nformat = \"{format}\"\n")
    };
    assert_eq!(
        err(&feed("/etc/shadow", "plain")),
        "p.toml:34: feed.path: \"/etc/shadow\" must be a relative path inside the policy's directory (no \"..\", not absolute)"
    );
    assert_eq!(
        err(&feed("feeds/../../x", "plain")),
        "p.toml:34: feed.path: \"feeds/../../x\" must be a relative path inside the policy's directory (no \"..\", not absolute)"
    );
    assert_eq!(
        err(&feed("x.txt", "csv")),
        "p.toml:35: feed.format: unknown variant `csv`, expected one of `plain`, `netset`, `ipset`, `spamhaus`, `json`"
    );
    assert_eq!(
        err(&feed("missing.txt", "plain")),
        "p.toml:34: feed.path: cannot read missing.txt: No such file or directory (os error 2)"
    );
    let reserved = feed("x.txt", "plain").replace("name = \"f\"", "name = \"policy\"");
    assert_eq!(
        err(&reserved),
        "p.toml:33: feed.name: \"policy\" is reserved for the [blocklist] of the policy itself"
    );
}

#[test]
fn feed_content_errors_name_the_feed_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("feeds")).unwrap();
    std::fs::write(
        dir.path().join("feeds/bad.netset"),
        "# header\n1.2.3.4\n1.2.3.4.5\n",
    )
    .unwrap();
    let text = format!(
        "{BASE}\n[[feed]]\nname = \"bad\"\npath = \"feeds/bad.netset\"\nformat = \"netset\"\n"
    );
    let e = compile_in(dir.path(), &text).unwrap_err();
    let want = format!(
        "{}: entry: \"1.2.3.4.5\" is not an IP address or CIDR",
        dir.path().join("feeds/bad.netset:3").display()
    );
    assert_eq!(e, want);
}

#[test]
fn error_kind_and_fields_are_structured() {
    let e = gateway_policy::compile_str(
        &edit(BASE, "[443, ", "[70000, "),
        std::path::Path::new("p.toml"),
        &common::lab_profile(),
    )
    .unwrap_err();
    assert_eq!(e.kind, gateway_policy::ErrorKind::Invalid);
    assert_eq!(
        (e.line, e.field.as_str()),
        (23, "shared_system.allow.ports")
    );
    let e = gateway_policy::compile(
        std::path::Path::new("/nonexistent/policy.toml"),
        &common::lab_profile(),
    )
    .unwrap_err();
    assert_eq!(e.kind, gateway_policy::ErrorKind::Io);
    assert!(std::error::Error::source(&e).is_some());
}
