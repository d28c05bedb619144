//! Small constructors for the `nftables` crate's JSON schema types, so the rules in
//! [`crate::render`] read like the `nft` text they stand for.

use std::borrow::Cow;
use std::collections::HashSet;

use ipnet::IpNet;
use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem,
};
use nftables::schema::{Chain, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{AnonymousCounter, Counter, Limit, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

/// The one table the gateway owns.
pub const TABLE: &str = "gateway";
/// Its family: one table for IPv4 and IPv6, NAT included (inet NAT: Linux ≥ 5.2).
pub const FAMILY: NfFamily = NfFamily::INet;

pub type Stmts = Vec<Statement<'static>>;

/// `<protocol> <field>`, e.g. `ip saddr`.
pub fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

pub fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

pub fn string(s: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(s.into()))
}

/// A reference to a named set of our table: `@name`.
pub fn set_ref(name: &str) -> Expression<'static> {
    string(format!("@{name}"))
}

/// An anonymous set `{ a, b }`.
pub fn anon_set(items: impl IntoIterator<Item = Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

/// A prefix as nft writes it: a plain address for a host, `addr/len` otherwise.
pub fn net(n: &IpNet) -> Expression<'static> {
    if n.prefix_len() == n.max_prefix_len() {
        string(n.addr().to_string())
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(string(n.network().to_string())),
            len: u32::from(n.prefix_len()),
        }))
    }
}

pub fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

/// `left == right` (for a set on the right, nft reads it as membership).
pub fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::EQ, right)
}

pub fn iifname_in(set: &str) -> Statement<'static> {
    eq(meta(MetaKey::Iifname), set_ref(set))
}

pub fn oifname_in(set: &str) -> Statement<'static> {
    eq(meta(MetaKey::Oifname), set_ref(set))
}

/// `ct state { a, b }`: ct state is a bit mask, so the match is `in` a list of flags.
pub fn ct_state(states: &[&'static str]) -> Statement<'static> {
    matches(
        ct("state"),
        Operator::IN,
        Expression::List(states.iter().map(|s| string(*s)).collect()),
    )
}

pub fn counter() -> Statement<'static> {
    Statement::Counter(Counter::Anonymous(Some(AnonymousCounter::default())))
}

/// `limit rate <n>/second`.
pub fn limit_per_second(rate: u32) -> Statement<'static> {
    Statement::Limit(Limit {
        rate,
        rate_unit: None,
        per: Some("second".into()),
        burst: None,
        burst_unit: None,
        inv: None,
    })
}

pub fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

pub fn drop() -> Statement<'static> {
    Statement::Drop(None)
}

pub fn masquerade() -> Statement<'static> {
    Statement::Masquerade(None)
}

pub fn rule(chain: &'static str, comment: &str, expr: Stmts) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: FAMILY,
        table: TABLE.into(),
        chain: chain.into(),
        expr: expr.into(),
        handle: None,
        index: None,
        comment: Some(Cow::Owned(comment.to_string())),
    })
}

pub fn base_chain(
    name: &'static str,
    kind: NfChainType,
    hook: NfHook,
    prio: i32,
    policy: NfChainPolicy,
) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        newname: None,
        handle: None,
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        dev: None,
        policy: Some(policy),
    })
}

/// A named set of our table. Prefix sets are interval sets; the caller hands in aggregated
/// (non-overlapping) prefixes, which an interval set requires.
pub fn named_set(
    name: &'static str,
    kind: SetType,
    elems: Vec<Expression<'static>>,
    comment: &str,
) -> NfListObject<'static> {
    let interval = matches!(kind, SetType::Ipv4Addr | SetType::Ipv6Addr);
    NfListObject::Set(Box::new(Set {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        handle: None,
        set_type: SetTypeValue::Single(kind),
        policy: None,
        // One flag at most: a HashSet of several would serialise in random order.
        flags: interval.then(|| HashSet::from([SetFlag::Interval])),
        elem: (!elems.is_empty()).then(|| elems.into()),
        timeout: None,
        gc_interval: None,
        size: None,
        comment: Some(Cow::Owned(comment.to_string())),
    }))
}
