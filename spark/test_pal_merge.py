"""Unit tests of pal_merge (no Spark needed): python3 -m pytest spark/ or
python3 -m unittest discover -s spark."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pal_merge as pm  # noqa: E402

T0 = 1_700_006_100 * 10**9  # 2023-11-14T23:55:00Z
S = 10**9


def ts(ns):
    return pm.ns_ts(ns)


def flow(fid, src, sport, dst, dport, first, last, reason, proto=6, opk=1, rpk=1, ob=0, rb=0,
         history="", parents=None, depth=0, **kw):
    r = {"flow_id": fid, "src_ip": src, "src_port": sport, "dst_ip": dst, "dst_port": dport,
         "first": ts(first), "last": ts(last), "duration": (last - first) / 1e9,
         "proto": {6: "tcp", 17: "udp"}[proto], "proto_num": proto,
         "orig_bytes": ob, "resp_bytes": rb, "orig_pkts": opk, "resp_pkts": rpk,
         "orig_ip_bytes": 40 * opk + ob, "resp_ip_bytes": 40 * rpk + rb,
         "orig_wire_bytes": 54 * opk + ob, "resp_wire_bytes": 54 * rpk + rb,
         "missed_bytes": 0, "history": history, "conn_state": "OTH",
         "tcp_flags_orig": "", "tcp_flags_resp": "", "tunnel_depth": depth,
         "end_reason": reason}
    if parents:
        r["tunnel_parents"] = parents
    r.update(kw)
    return r


class TimeText(unittest.TestCase):
    def test_round_trip_and_known_value(self):
        self.assertEqual(pm.ns_ts(T0 + 620000), "2023-11-14T23:55:00.000620000Z")
        self.assertEqual(pm.ts_ns("2023-11-14T23:55:00.000620000Z"), T0 + 620000)
        self.assertEqual(pm.ts_ns("1970-01-01T00:00:00.000000001Z"), 1)
        self.assertIsNone(pm.ts_ns(None))


class Stitching(unittest.TestCase):
    def test_flow_cut_at_a_boundary_is_one_flow_turned_piece_summed_by_direction(self):
        a = flow("aaaa000000000001", "10.0.0.1", 4000, "10.0.0.2", 443, T0, T0 + 70 * S,
                 "end-of-input", opk=5, rpk=4, ob=100, rb=900, history="ShADad",
                 tcp_flags_orig="SA", tcp_flags_resp="SA")
        # the next shard's piece starts with the server's packet: turned
        b = flow("bbbb000000000002", "10.0.0.2", 443, "10.0.0.1", 4000, T0 + 80 * S,
                 T0 + 90 * S, "fin", opk=3, rpk=2, ob=300, rb=50, history="DdFf",
                 tcp_flags_orig="FA", tcp_flags_resp="PA")
        m = pm.merge([pm.Shard("s0", flows=[a]), pm.Shard("s1", flows=[b])])
        self.assertEqual(len(m.flows), 1)
        f = m.flows[0]
        self.assertEqual(f["flow_id"], "aaaa000000000001")
        self.assertEqual((f["src_ip"], f["src_port"]), ("10.0.0.1", 4000))
        self.assertEqual((f["orig_pkts"], f["resp_pkts"]), (5 + 2, 4 + 3))
        self.assertEqual((f["orig_bytes"], f["resp_bytes"]), (100 + 50, 900 + 300))
        self.assertEqual(f["first"], ts(T0))
        self.assertEqual(f["last"], ts(T0 + 90 * S))
        self.assertEqual(f["duration"], 90.0)
        self.assertEqual(f["end_reason"], "fin")
        self.assertEqual(f["tcp_flags_orig"], "SPA")
        self.assertEqual(f["tcp_flags_resp"], "FSA")
        self.assertEqual(f["history"], "ShADadfF")
        self.assertEqual(f["conn_state"], "SF")
        self.assertEqual(m.counts["stitched"], 1)
        self.assertEqual(m.counts["stitched_turned"], 1)
        self.assertEqual(m.counts["tcp_stream_cut"], 1)

    def test_gap_at_the_timeout_is_two_flows_and_the_first_times_out(self):
        # the flow table ends a flow once a packet comes at last + timeout
        a = flow("a1", "10.0.0.1", 1, "10.0.0.2", 2, T0, T0 + 10 * S, "end-of-input", proto=17)
        b = flow("b1", "10.0.0.1", 1, "10.0.0.2", 2, T0 + 70 * S, T0 + 71 * S, "end-of-input",
                 proto=17)
        m = pm.merge([pm.Shard("s0", flows=[a]), pm.Shard("s1", flows=[b])])
        self.assertEqual([f["flow_id"] for f in m.flows], ["a1", "b1"])
        self.assertEqual(m.flows[0]["end_reason"], "timeout")
        self.assertEqual(m.flows[1]["end_reason"], "end-of-input")
        self.assertEqual(m.counts["not_stitched_gap"], 1)
        # one nanosecond less: one flow
        b2 = dict(b, first=ts(T0 + 70 * S - 1))
        m = pm.merge([pm.Shard("s0", flows=[a]), pm.Shard("s1", flows=[b2])])
        self.assertEqual(len(m.flows), 1)

    def test_timeouts_come_from_the_configuration(self):
        a = flow("a1", "10.0.0.1", 1, "10.0.0.2", 2, T0, T0 + 10 * S, "end-of-input", proto=17)
        b = flow("b1", "10.0.0.1", 1, "10.0.0.2", 2, T0 + 70 * S, T0 + 71 * S, "end-of-input",
                 proto=17)
        m = pm.merge([pm.Shard("s0", flows=[a]), pm.Shard("s1", flows=[b])],
                     {"udp_timeout": 120.0})
        self.assertEqual(len(m.flows), 1)

    def test_piece_without_continuation_keeps_end_of_input_when_the_capture_ends_first(self):
        a = flow("a1", "10.0.0.1", 1, "10.0.0.2", 2, T0, T0 + 10 * S, "end-of-input")
        other = flow("o1", "10.0.0.3", 1, "10.0.0.4", 2, T0 + 20 * S, T0 + 100 * S,
                     "end-of-input")
        m = pm.merge([pm.Shard("s0", flows=[a]), pm.Shard("s1", flows=[other])])
        self.assertEqual(sorted(f["end_reason"] for f in m.flows), ["end-of-input"] * 2)

    def test_fin_closed_flow_lingers_across_the_boundary_but_a_new_syn_starts_a_new_one(self):
        a = flow("a1", "10.0.0.1", 1, "10.0.0.2", 443, T0, T0 + 74 * S, "fin", history="ShADadFf")
        ack = flow("b1", "10.0.0.1", 1, "10.0.0.2", 443, T0 + 76 * S, T0 + 76 * S,
                   "end-of-input", rpk=0, history="A")
        m = pm.merge([pm.Shard("s0", flows=[a], end_ns=T0 + 75 * S),
                      pm.Shard("s1", flows=[ack])])
        self.assertEqual(len(m.flows), 1)
        # a closed flow stays closed: it ends by its FIN once the linger is over
        self.assertEqual(m.flows[0]["end_reason"], "fin")
        self.assertEqual(m.flows[0]["orig_pkts"], 2)
        syn = flow("b2", "10.0.0.1", 1, "10.0.0.2", 443, T0 + 76 * S, T0 + 77 * S, "fin",
                   history="ShAFf")
        m = pm.merge([pm.Shard("s0", flows=[a], end_ns=T0 + 75 * S),
                      pm.Shard("s1", flows=[syn])])
        self.assertEqual(len(m.flows), 2)
        self.assertEqual(m.counts["not_stitched_new_syn"], 1)
        # the linger (5 s) had passed within the first shard: no stitch
        m = pm.merge([pm.Shard("s0", flows=[a], end_ns=T0 + 80 * S),
                      pm.Shard("s1", flows=[dict(ack, first=ts(T0 + 78 * S))])])
        self.assertEqual(len(m.flows), 2)

    def test_fins_in_two_pieces_close_the_flow(self):
        a = flow("a1", "10.0.0.1", 1, "10.0.0.2", 443, T0, T0 + 74 * S, "end-of-input",
                 history="ShADadF", tcp_flags_orig="FSA", tcp_flags_resp="SA")
        b = flow("b1", "10.0.0.2", 443, "10.0.0.1", 1, T0 + 76 * S, T0 + 76 * S,
                 "end-of-input", rpk=0, history="F", tcp_flags_orig="FA")
        m = pm.merge([pm.Shard("s0", flows=[a]), pm.Shard("s1", flows=[b])])
        self.assertEqual(len(m.flows), 1)
        self.assertEqual(m.flows[0]["end_reason"], "fin")
        self.assertEqual(m.flows[0]["tcp_flags_resp"], "FSA")
        self.assertEqual(m.flows[0]["conn_state"], "SF")

    def test_flow_spanning_three_shards_and_the_empty_one_between(self):
        pieces = [flow("p%d" % i, "2001:db8::1", 5, "2001:db8::2", 6, T0 + i * 75 * S,
                       T0 + i * 75 * S + 10 * S, "end-of-input", proto=17, opk=i + 1, rpk=1)
                  for i in range(3)]
        shards = [pm.Shard("s%d" % i, flows=[p]) for i, p in enumerate(pieces)]
        m = pm.merge(shards, {"udp_timeout": 200.0})
        self.assertEqual(len(m.flows), 1)
        self.assertEqual(m.flows[0]["orig_pkts"], 1 + 2 + 3)
        # a shard in between without the flow: still one flow (gap 140 s < 200 s)
        m = pm.merge([shards[0], pm.Shard("empty"), shards[2]], {"udp_timeout": 200.0})
        self.assertEqual(len(m.flows), 1)

    def test_tunnelled_flows_match_by_their_tunnel_and_get_its_stitched_id(self):
        def shard(i, inner_port):
            base = T0 + i * 75 * S
            outer = flow("o%d" % i, "10.250.0.1", 49194, "10.250.0.2", 4789, base, base + 70 * S,
                         "end-of-input", proto=17)
            inner = flow("i%d" % i, "192.168.7.1", inner_port, "192.168.7.2", 22, base + S,
                         base + 8 * S, "end-of-input", parents=["o%d" % i], depth=1)
            # the same inner 5-tuple outside the tunnel is another flow
            bare = flow("x%d" % i, "192.168.7.1", inner_port, "192.168.7.2", 22, base + 2 * S,
                        base + 3 * S, "end-of-input")
            return pm.Shard("s%d" % i, flows=[outer, inner, bare])
        m = pm.merge([shard(0, 40000), shard(1, 40000)])
        ids = {f["flow_id"]: f for f in m.flows}
        self.assertEqual(sorted(ids), ["i0", "o0", "x0"])
        self.assertEqual(ids["i0"]["tunnel_parents"], ["o0"])
        self.assertEqual(ids["i0"]["orig_pkts"], 2)
        self.assertEqual(ids["o0"]["orig_pkts"], 2)
        self.assertEqual(ids["x0"]["orig_pkts"], 2)


class Records(unittest.TestCase):
    def test_connection_rows_summed_flows_corrected_ids_stitched(self):
        a = flow("a1", "10.0.0.1", 1, "10.0.0.2", 2, T0, T0 + 70 * S, "end-of-input")
        b = flow("b1", "10.0.0.1", 1, "10.0.0.2", 2, T0 + 76 * S, T0 + 80 * S, "end-of-input",
                 rpk=0)
        c0 = [{"src_ip": "10.0.0.1", "src_port": 1, "dst_ip": "10.0.0.2", "dst_port": 2,
               "first": ts(T0), "last": ts(T0 + 60 * S), "flow_id": "a1",
               "protocols": ["TCP"], "bytes": 100, "packets": 1, "flows": 1},
              {"src_ip": "10.0.0.2", "src_port": 2, "dst_ip": "10.0.0.1", "dst_port": 1,
               "first": ts(T0 + 1), "last": ts(T0 + 70 * S), "flow_id": "a1",
               "protocols": ["TCP"], "bytes": 54, "packets": 1, "flows": 1}]
        c1 = [{"src_ip": "10.0.0.1", "src_port": 1, "dst_ip": "10.0.0.2", "dst_port": 2,
               "first": ts(T0 + 76 * S), "last": ts(T0 + 80 * S), "flow_id": "b1",
               "protocols": ["UDP"], "bytes": 60, "packets": 2, "flows": 1}]
        m = pm.merge([pm.Shard("s0", flows=[a], connections=c0),
                      pm.Shard("s1", flows=[b], connections=c1)])
        rows = {(r["src_ip"], r["dst_ip"]): r for r in m.connections}
        fwd = rows[("10.0.0.1", "10.0.0.2")]
        self.assertEqual((fwd["bytes"], fwd["packets"], fwd["flows"]), (160, 3, 1))
        self.assertEqual(fwd["protocols"], ["TCP", "UDP"])
        self.assertEqual((fwd["first"], fwd["last"]), (ts(T0), ts(T0 + 80 * S)))
        self.assertEqual(fwd["flow_id"], "a1")
        self.assertEqual(rows[("10.0.0.2", "10.0.0.1")]["flows"], 1)

    def test_dns_query_and_response_split_by_a_boundary_are_paired(self):
        a = flow("a1", "10.0.0.4", 30001, "10.0.0.53", 53, T0 + 75 * S - 10**7,
                 T0 + 75 * S - 10**7, "end-of-input", proto=17, rpk=0)
        b = flow("b1", "10.0.0.53", 53, "10.0.0.4", 30001, T0 + 75 * S + 2 * 10**7,
                 T0 + 75 * S + 2 * 10**7, "end-of-input", proto=17, rpk=0)
        common = {"src_ip": "10.0.0.4", "src_port": 30001, "dst_ip": "10.0.0.53",
                  "dst_port": 53, "proto": "udp", "trans_id": 0x4001, "query": "cut1.example.net",
                  "qclass": 1, "qclass_name": "C_INTERNET", "qtype": 1, "qtype_name": "A",
                  "opcode": 0, "opcode_name": "QUERY"}
        q = dict(common, ts=a["first"], flow_id="a1", rtt=None, rcode=None, rcode_name=None,
                 flags=["rd"], answers=None, answer_types=None, ttls=None, authorities=None,
                 additionals=None, edns_udp_size=None, edns_do=None)
        r = dict(common, ts=b["first"], flow_id="b1", rtt=None, rcode=0, rcode_name="NOERROR",
                 flags=["rd", "ra"], answers=["203.0.113.1"], answer_types=["A"], ttls=[300],
                 authorities=0, additionals=0, edns_udp_size=None, edns_do=None)
        m = pm.merge([pm.Shard("s0", flows=[a], dns=[q]), pm.Shard("s1", flows=[b], dns=[r])])
        self.assertEqual(len(m.flows), 1)
        self.assertEqual(len(m.dns), 1)
        d = m.dns[0]
        self.assertEqual((d["flow_id"], d["ts"], d["rcode"]), ("a1", q["ts"], 0))
        self.assertEqual(d["answers"], ["203.0.113.1"])
        self.assertEqual(d["flags"], ["rd", "ra"])
        self.assertAlmostEqual(d["rtt"], 0.03, places=9)
        self.assertEqual(m.counts["dns_split_paired"], 1)

    def test_basic_stats_summed_and_recounted(self):
        a = flow("a1", "10.0.0.1", 1, "10.0.0.2", 2, T0, T0 + 70 * S, "end-of-input")
        b = flow("b1", "10.0.0.1", 1, "10.0.0.2", 2, T0 + 76 * S, T0 + 80 * S, "rst")
        st = lambda n, reason: {"totals": {"packets": n, "bytes": 10 * n},  # noqa: E731
                                "flows_ended": {reason: 1},
                                "l3_conversations": [{"a": "10.0.0.1", "b": "10.0.0.2",
                                                      "flows": 1, "packets_ab": n}]}
        m = pm.merge([pm.Shard("s0", flows=[a], basic_stats=st(3, "end-of-input")),
                      pm.Shard("s1", flows=[b], basic_stats=st(4, "rst"))])
        self.assertEqual(m.basic_stats["totals"], {"packets": 7, "bytes": 70})
        self.assertEqual(m.basic_stats["flows_ended"], {"rst": 1})
        self.assertEqual(m.basic_stats["l3_conversations"],
                         [{"a": "10.0.0.1", "b": "10.0.0.2", "flows": 1, "packets_ab": 7}])

    def test_l4_conversations_summed_by_their_ports_in_any_grouping(self):
        conv = lambda n: {"l4_conversations": [  # noqa: E731
            {"a": "10.0.0.1", "a_port": 4000, "b": "10.0.0.2", "b_port": 53,
             "protocol": "UDP", "flows": 1, "packets_ab": n}]}
        stats = [conv(1), conv(2), conv(3)]
        left = pm.sum_stats(pm.sum_stats(pm.sum_stats(None, stats[0]), stats[1]), stats[2])
        # a tree (Spark's treeAggregate): (0 + 1) + (2), then partial sums added
        right = pm.sum_stats(pm.sum_stats(pm.sum_stats(None, stats[0]), stats[1]),
                             pm.sum_stats(None, stats[2]))
        want = [{"a": "10.0.0.1", "a_port": 4000, "b": "10.0.0.2", "b_port": 53,
                 "protocol": "UDP", "flows": 3, "packets_ab": 6}]
        self.assertEqual(left["l4_conversations"], want)
        self.assertEqual(right["l4_conversations"], want)
        tree = pm.sum_stats(pm.sum_stats(None, stats[0]),
                            pm.sum_stats(pm.sum_stats(None, stats[1]), stats[2]))
        self.assertEqual(tree["l4_conversations"], want)


class ConnState(unittest.TestCase):
    def test_states_from_history_letters(self):
        cs = pm.conn_state_from_history
        self.assertEqual(cs(6, "ShADadFf", 10, 10, 5, 5), "SF")
        self.assertEqual(cs(6, "S", 0, 0, 1, 0), "S0")
        self.assertEqual(cs(6, "Sr", 0, 0, 1, 1), "REJ")
        self.assertEqual(cs(6, "ShADad", 1, 1, 3, 3), "S1")
        self.assertEqual(cs(6, "ShADadR", 1, 1, 3, 3), "RSTO")
        self.assertEqual(cs(6, "ShADadr", 1, 1, 3, 3), "RSTR")
        self.assertEqual(cs(6, "ShADadF", 1, 1, 3, 3), "S2")
        self.assertEqual(cs(6, "Dd", 1, 1, 1, 1), "OTH")
        self.assertEqual(cs(17, "Dd", 1, 1, 1, 1), "SF")
        self.assertEqual(cs(17, "D", 1, 0, 1, 0), "S0")


if __name__ == "__main__":
    unittest.main()
