// Package kube is custos's Kubernetes DCS backend, wire-compatible with
// Patroni's Kubernetes DCS: the same objects, annotations and labels, so that
// patronictl and Patroni members read what custos writes.
//
// Layout (Patroni's, in the configured namespace, every object labelled
// with labels + <scope_label>=<scope>):
//
//   - <scope>-leader ConfigMap (with use_endpoints: the Endpoints <scope>,
//     whose subsets point at the leader): annotations leader, acquireTime,
//     renewTime, ttl, transitions (the leader record), optime, slots,
//     retain_slots (the /status key, field by field) and failsafe;
//   - <scope>-config: annotations config, initialize and history (with
//     use_endpoints also a headless Service <scope>-config, so that the
//     Endpoints are not deleted as orphans);
//   - <scope>-failover: annotations leader, member, scheduled_at;
//   - <scope>-sync: annotations leader, sync_standby, quorum;
//   - members: with member_store = "pod" (the default in a Pod) the Pod
//     named after the member, annotation status = the member data, labels
//     role_label (and tmp_role_label, bootstrap_labels) from the data's role
//     and state. Outside a Pod (member_store = "configmap", the default
//     there) a ConfigMap <scope>-member-<name> carries the same annotation
//     and labels; Patroni has no equivalent, since it only runs in Pods.
//
// Kubernetes has no TTL on objects. As in Patroni, liveness is judged by
// each reader on its own clock: the leader counts as present only while
// its leader record has changed within the last ttl of the reader's time
// (see observations); the record's own ttl annotation is the TTL. Member
// records written by custos carry renewTime too and expire the same way,
// after the reader's TTL; a Pod's status written by Patroni (no renewTime)
// lives as long as the Pod, as Patroni reads it. Every client keeps a watch
// on the cluster's objects from Configure on, so a record is observed when
// it is written rather than when it is next read, and Watch turns an
// expiry into a delete event on a timer.
//
// Versions: a key with an object of its own (failover, sync) is versioned
// by the object's resourceVersion, and so are the leader (the leader
// object's, which moves with renewals and status writes) and the members.
// Keys that share an object (config, initialize and history; status and
// failsafe next to the leader record) are versioned by a digest of their
// value, so that writing history does not fail a compare-and-set on config;
// the price is that a compare-and-set succeeds when the value read was
// changed and then changed back (it is the same value, so the write is
// still based on what is there). Every conditional write is a patch
// carrying the resourceVersion that was read, so the check and the write
// are atomic; 409 Conflict means "read again and decide again".
//
// Structured keys (status, failover, sync) are stored field by field as
// Patroni does when they are JSON objects of the known fields; any other
// value is kept verbatim in a custos-ha.github.io/<key> annotation, which
// Patroni ignores, so every value round-trips. Reads render the fields
// compactly in a fixed order (the form core writes).
//
// The contract's path namespace (/service) has no counterpart, as in
// Patroni: objects are named from the scope, and the section's namespace
// key is the Kubernetes namespace (the Pod's own by default in a Pod,
// "default" outside). The API server is found through the kubeconfig key,
// else the Pod's service account, else the default kubeconfig.
//
// The package also owns the parsing and validation of the [dcs.kubernetes]
// section, with Patroni's key names.
package kube
