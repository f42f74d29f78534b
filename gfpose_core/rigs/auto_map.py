"""Automatic mapping: the body24 landmarks of any humanoid armature or BVH skeleton, from its topology and rest
geometry, as a RigMap (the type shipped maps load to), so that bind, solve and load_take work unchanged.

The pelvis is the branch where two legs leave the spine, the chest the branch where two arms and the neck leave it;
up runs from the ankles through the pelvis to the head, front is where the feet point, left is up x front. Along each
limb the two longest consecutive segments are the thigh and shin; an arm's shoulder is the first joint well out to
the side with a long segment after it. Landmarks follow docs/design.md at the training data's fractions
(rigs/landmarks.py, the same table the shipped maps are held to): spine and chest a third and two thirds of the way
from the pelvis to the base of the neck (a bone head when one lies within landmarks.SNAP, else a point between
two), the head pivot a third of the way from the base of the neck to the crown, the collar root
out from the midline as far as the training bodies have it, the hand end at the middle knuckle, the toe at the ball
of the foot. End points a rig lacks come from a bone's tail or an offset in the training data's proportions.
Names only confirm the sides (`auto_names`); a rig of Node_0 ... maps the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gfpose_core.body.skeleton import JOINT_NAMES
from gfpose_core.formats.bvh import BvhClip
from gfpose_core.rigs.armature import Armature
from gfpose_core.rigs.auto_body import NotHumanoidError, find_body, unit
from gfpose_core.rigs.auto_graph import Graph, armature_graph, bvh_graph
from gfpose_core.rigs.auto_names import is_middle_finger, side_hint
from gfpose_core.rigs.landmarks import CHEST_T, COLLAR_OUT, HAND_END, HEAD_T, SNAP, SPINE_T, TOE, allowed
from gfpose_core.rigs.rig_map import (
    RigMap,
    RigMapError,
    bone_of,
    parse_rig_map,
    remember_rig_map,
)

# Common source units (metres per unit): metres, centimetres, millimetres, inches, CMU ASF units.
_UNITS = (1.0, 0.01, 0.001, 0.0254, 0.056444)
_STATURE_PER_LEG = 2.05       # stature over hip-knee-ankle length, for the thresholds and proportional offsets


@dataclass
class AutoMap:
    rig: RigMap
    confidence: float            # 0..1: how sure the mapping is (symmetry, names agreeing, fallbacks used)
    notes: list[str] = field(default_factory=list)
    stature: float = 0.0         # estimated standing height, metres

    def joint_bones(self) -> dict[str, str]:
        """Each body24 joint's main bone (or joint), for review."""
        return {j: bone_of(self.rig.joints[j].refs[0]) if not self.rig.joints[j].refs[0].startswith("@")
                else bone_of(self.rig.joints[j].refs[1]) for j in JOINT_NAMES}


# --- the mapping ------------------------------------------------------------------------------------------------

class _Mapper:
    def __init__(self, g: Graph, name: str, world: np.ndarray | None = None):
        self.g, self.name, self.world = g, name, world
        self.body = find_body(g, name)
        self.joints: dict[str, object] = {}
        self.notes: list[str] = []
        self.confidence = 1.0
        self.fallbacks = 0
        self.front_guessed = False
        self.collars: dict[str, tuple[int, int]] = {}

    # helpers
    def p(self, n: int) -> np.ndarray:
        return self.g.head[n]

    def reduced(self, chain: list[int]) -> list[int]:
        """Chain positions whose point differs from the one before (zero-length joints dropped)."""
        out = [0]
        for i in range(1, len(chain)):
            if np.linalg.norm(self.p(chain[i]) - self.p(chain[out[-1]])) > 1e-4 * self.g.extent:
                out.append(i)
        return out

    def offset_entry(self, node: int, target: np.ndarray) -> dict:
        """A point fixed to a node's bone (armature: in the armature's axes at rest, metres; BVH: file axes)."""
        g = self.g
        ref = g.names[node]
        if g.kind == "bvh":
            d = target - self.p(node)
            d = g.rotation[node].T @ d if g.rotation is not None else d
            return {"joint": ref, "offset": [float(v) for v in d]}
        bone = bone_of(ref)
        base = g.head[g.names.index(bone)]
        r = self.world[:3, :3] / np.linalg.norm(self.world[:3, 0])
        return {"joint": bone, "rest_offset": [float(v) for v in r.T @ (target - base)]}

    def fallback(self, note: str):
        self.fallbacks += 1
        self.notes.append(note)

    # limbs
    def leg(self, k: int) -> dict:
        g = self.g
        chain = g.chain(k)
        every = self.reduced(chain)
        real = [i for i in every if not g.virtual[chain[i]]]
        # An importer's guess at a last bone's length (its tail) must not pass for the shin.
        red = real if len(real) >= 3 else every
        pts = [self.p(chain[i]) for i in red]
        if len(pts) < 3:
            raise NotHumanoidError(f"'{self.name}': the leg from '{g.names[k]}' has fewer than three joints")
        seg = [np.linalg.norm(pts[i + 1] - pts[i]) for i in range(len(pts) - 1)]
        i = max(range(len(seg) - 1), key=lambda j: seg[j] + seg[j + 1])
        return {"chain": chain, "red": every, "hip": red[i], "knee": red[i + 1], "ankle": red[i + 2],
                "length": seg[i] + seg[i + 1]}

    def setup_frame(self):
        b, g = self.body, self.g
        self.legs = [self.leg(k) for k in b.legs]
        self.href = _STATURE_PER_LEG * float(np.mean([leg["length"] for leg in self.legs]))
        hips = np.mean([self.p(leg["chain"][leg["hip"]]) for leg in self.legs], axis=0)
        ankles = np.mean([self.p(leg["chain"][leg["ankle"]]) for leg in self.legs], axis=0)
        self.up = unit(unit(hips - ankles) + unit(self.p(b.chest) - hips))
        for leg in self.legs:
            leg["toe"] = self.toe_point(leg)
        fwd = sum(t - self.p(leg["chain"][leg["ankle"]]) for leg, t in
                  ((leg, leg["toe"][1]) for leg in self.legs) if leg["toe"][0] is not None)
        fwd = fwd - (fwd @ self.up) * self.up if not isinstance(fwd, int) else np.zeros(3)
        fwd = unit(fwd) if np.linalg.norm(fwd) > 0.02 * self.href else np.zeros(3)
        if not np.any(fwd):
            default = np.array([0.0, -1.0, 0.0]) if g.kind == "armature" else np.array([0.0, 0.0, 1.0])
            fwd = unit(default - (default @ self.up) * self.up)
            self.confidence *= 0.6
            self.front_guessed = True
            self.notes.append("no toes to tell the front by: assumed the usual facing (bone names, where they "
                              "name sides, decide left and right)")
        self.front = fwd
        self.left = np.cross(self.up, self.front)
        self.pelvis = hips

    def toe_point(self, leg) -> tuple[int | None, np.ndarray]:
        chain, red = leg["chain"], leg["red"]
        ankle = self.p(chain[leg["ankle"]])
        # The ball of the foot lies ahead of the ankle: a point straight below it (a last bone pointing on down the
        # shin, as importers make them) is no toe.
        after = [chain[i] for i in red if i > leg["ankle"] and self.ahead(self.p(chain[i]) - ankle)]
        for n in after:
            if np.linalg.norm(self.p(n) - ankle) >= 0.04 * self.href:
                return n, self.p(n)
        for n in after[::-1]:
            if np.linalg.norm(self.p(n) - ankle) >= 0.015 * self.href:
                return n, self.p(n)
        return None, ankle

    def ahead(self, d: np.ndarray) -> bool:
        flat = d - (d @ self.up) * self.up
        return float(np.linalg.norm(flat)) >= max(0.02 * self.href, 0.5 * abs(float(d @ self.up)))

    def lateral(self, x: np.ndarray) -> float:
        return float((x - self.pelvis) @ self.left)

    def height(self, x: np.ndarray) -> float:
        return float((x - self.pelvis) @ self.up)

    def sides(self, items: list, point) -> list:
        """The two limbs ordered (left, right) by rest position; names break a tie and are checked."""
        lat = [self.lateral(point(x)) for x in items]
        order = [0, 1] if lat[0] >= lat[1] else [1, 0]
        hints = [self.limb_hint(x) for x in items]
        guessed = self.front_guessed
        if (abs(lat[0] - lat[1]) < 0.01 * self.href or guessed) and hints[0] in ("l", "r") and hints[1] in ("l", "r") \
                and hints[0] != hints[1]:
            order = [0, 1] if hints[0] == "l" else [1, 0]
        elif hints[order[0]] == "r" and hints[order[1]] == "l":
            self.confidence *= 0.5
            self.notes.append(f"bone names say left and right the other way round from the rest pose "
                              f"({self.g.names[self.first(items[order[0]])]} is on the character's left)")
        return [items[i] for i in order]

    def first(self, x) -> int:
        return x["chain"][0] if isinstance(x, dict) else x

    def limb_hint(self, x) -> str | None:
        chain = x["chain"] if isinstance(x, dict) else self.g.chain(x)
        votes = [side_hint(self.g.names[n]) for n in chain if not self.g.virtual[n]]
        votes = [v for v in votes if v]
        return max(set(votes), key=votes.count) if votes else None

    def map_legs(self, keyed: dict):
        g = self.g
        ordered = self.sides(self.legs, lambda leg: self.p(leg["chain"][leg["hip"]]))
        if self.front_guessed:
            # The sides came from the names: left and front follow them (a rig facing +X with no toes).
            across = self.p(ordered[0]["chain"][ordered[0]["hip"]]) - self.p(ordered[1]["chain"][ordered[1]["hip"]])
            self.left = unit(across - (across @ self.up) * self.up)
            self.front = np.cross(self.left, self.up)
        for s, leg in zip("lr", ordered):
            chain = leg["chain"]
            self.joints[f"hip_{s}"] = g.names[chain[leg["hip"]]]
            self.joints[f"knee_{s}"] = g.names[chain[leg["knee"]]]
            ankle = chain[leg["ankle"]]
            # A foot hanging from a control: the ankle read where the shin ends, so that it follows the leg.
            self.joints[f"ankle_{s}"] = (g.names[g.parent[ankle]] + ":tail" if ankle in g.control
                                         else g.names[ankle])
            toe, _ = leg["toe"]
            if toe is not None:
                self.joints[f"toe_{s}"] = g.names[toe]
            else:
                # Forward and down (the foot's usual pitch), as far from the ankle as the training data's ball of
                # the foot is, in shin lengths.
                shin = np.linalg.norm(self.p(ankle) - self.p(chain[leg["knee"]]))
                target = self.p(ankle) + TOE * shin * unit(self.front * 0.075 - self.up * 0.035)
                self.joints[f"toe_{s}"] = self.offset_entry(ankle, target)
                self.fallback(f"no toe on the {'left' if s == 'l' else 'right'} foot: ball of the foot placed "
                              "in front of the ankle")
            for i, n in enumerate(chain[: leg["ankle"] + 1]):
                pivot = ("pelvis" if i < leg["hip"] else f"hip_{s}" if i < leg["knee"] else
                         f"knee_{s}" if i < leg["ankle"] else f"ankle_{s}")
                keyed.setdefault(n, pivot)

    def map_arms(self, keyed: dict):
        g, c = self.g, self.body.chest
        arms = []
        for k in self.body.arms:
            chain = g.chain(k)
            red = self.reduced(chain)
            pts = [self.p(chain[i]) for i in red]
            seg = [np.linalg.norm(pts[i + 1] - pts[i]) for i in range(len(pts) - 1)] + [0.0]
            cands = [j for j in range(len(red) - 2)
                     if abs(self.lateral(pts[j])) >= 0.05 * self.href and seg[j] >= 0.1 * self.href]
            j = cands[0] if cands else max(range(max(len(red) - 2, 1)), key=lambda j: seg[j] + seg[j + 1])
            if j + 2 >= len(red):
                raise NotHumanoidError(f"'{self.name}': the arm from '{g.names[k]}' has fewer than three joints")
            arms.append({"chain": chain, "red": red, "shoulder": red[j], "elbow": red[j + 1], "wrist": red[j + 2],
                         "collar": red[j - 1] if j > 0 else None})
        roots = [arm["chain"][arm["collar"] if arm["collar"] is not None else arm["shoulder"]] for arm in arms]
        self.collar_height = float(np.mean([self.height(self.p(n)) for n in roots]))
        self.shoulder_height = float(np.mean([self.height(self.p(arm["chain"][arm["shoulder"]])) for arm in arms]))
        for s, arm in zip("lr", self.sides(arms, lambda arm: self.p(arm["chain"][arm["shoulder"]]))):
            chain = arm["chain"]
            sh, wr = chain[arm["shoulder"]], chain[arm["wrist"]]
            el = chain[arm["elbow"]]
            for key, n in (("shoulder", sh), ("elbow", el), ("wrist", wr)):
                self.joints[f"{key}_{s}"] = g.names[n]
            col = chain[arm["collar"]] if arm["collar"] is not None else None
            self.collars[s] = (col if col is not None else c, sh)      # placed once the neck is known
            self.joints[f"hand_end_{s}"] = self.knuckle(wr, el, s)
            for i, n in enumerate(chain[: arm["wrist"] + 1]):
                pivot = (f"collar_{s}" if i < arm["shoulder"] else f"shoulder_{s}" if i < arm["elbow"] else
                         f"elbow_{s}" if i < arm["wrist"] else f"wrist_{s}")
                keyed.setdefault(n, pivot)

    def place_collars(self):
        for s, (col, sh) in self.collars.items():
            self.joints[f"collar_{s}"] = self.collar_root(col, sh)

    def collar_root(self, col: int, sh: int):
        """The inner end of the collar bone where the training bodies have it (landmarks.py): the bone's head if it
        lies in their band (out from the midline over the shoulder's distance; depth), else its line continued to
        the median (a collar on the centre line, or half way out), or a point on it moved onto the spine's depth."""
        g, x = self.g, self.p(col)
        lc, ls = self.lateral(x), self.lateral(self.p(sh))
        # In front of the pelvis -> neck line (as landmarks.py measures it), over that line's length.
        axis = self.p(g.names.index(self.joints["neck"])) - self.pelvis
        front = unit(self.front - (self.front @ axis) / (axis @ axis) * axis)
        d = x - self.pelvis
        depth = float((d - (d @ axis) / (axis @ axis) * axis) @ front)
        lo, hi = allowed("collar_out")
        if not allowed("collar_front")[0] <= depth / np.linalg.norm(axis) <= allowed("collar_front")[1]:
            return self.offset_entry(col, x - front * depth + self.left * (COLLAR_OUT * ls - lc))
        if abs(ls) > 1e-9 and lo <= lc / ls <= hi:
            return g.names[col]
        return {"lerp": [g.names[col], g.names[sh]], "t": float((COLLAR_OUT * ls - lc) / (ls - lc))}

    def knuckle(self, wrist: int, elbow: int, s: str):
        g = self.g
        w = self.p(wrist)
        along = unit(w - self.p(elbow))
        cands = []
        for k in g.children[wrist]:
            for n in g.chain(k):
                d = self.p(n) - w
                if np.linalg.norm(d) >= 0.035 * self.href:
                    if not g.virtual[n] or g.names[n].startswith(g.names[wrist]):
                        cands.append((any(is_middle_finger(g.names[m]) for m in g.chain(k)), float(unit(d) @ along),
                                      n))
                    break
        fingers = [x for x in cands if not g.names[x[2]].startswith(g.names[wrist] + ":")]
        if not fingers:
            # Short fingers only (a BVH hand of zero-length joints): the farthest point along the forearm.
            ends = [(float((self.p(n) - w) @ along), n) for k in g.children[wrist] for n in g.chain(k)
                    if not g.virtual[n]]
            ends = [e for e in ends if e[0] >= 0.02 * self.href]
            fingers = [(False, e, n) for e, n in ends]
        if fingers:
            return g.names[max(fingers)[2]]
        side = "left" if s == "l" else "right"
        tail = g.names[wrist] + ":tail"
        if g.kind == "armature":
            t = g.tail[wrist]
            length = np.linalg.norm(t - w)
            if 0.025 * self.href <= length <= 0.08 * self.href and unit(t - w) @ along > 0.5:
                self.fallback(f"no finger bones on the {side} hand: the hand bone's tail is the knuckles")
                return tail if tail in g.names else {"lerp": [g.names[wrist], tail], "t": 1.0}
        elif cands:
            return g.names[cands[0][2]]
        self.fallback(f"no finger bones on the {side} hand: knuckles placed along the forearm")
        return self.offset_entry(wrist, w + along * HAND_END * np.linalg.norm(w - self.p(elbow)))

    def map_torso(self, keyed: dict):
        g, b = self.g, self.body
        head_chain = self.head_chain(b.head)
        # The base of the neck is level with the collar bones' roots and the shoulders or above (landmarks.py's
        # shoulder_up): spine bones between the arms' branch and the neck belong to the torso, and so does a neck
        # bone that starts below the shoulders (the CMU skeletons' clavicles start low on the chest).
        k = 0
        base = max(self.collar_height, self.shoulder_height) - 0.01 * self.href
        while k < len(head_chain) - 2 and self.height(self.p(head_chain[k])) < base:
            k += 1
        torso, head_chain = b.torso[1:] + head_chain[:k], head_chain[k:]
        neck = head_chain[0]
        self.joints["pelvis"] = {"lerp": [self.joints["hip_l"], self.joints["hip_r"]], "t": 0.5}
        self.joints["neck"] = g.names[neck]
        top = self.height(self.p(neck))
        frac = {n: self.height(self.p(n)) / top for n in torso}
        line = [("@pelvis", 0.0)] + sorted(((g.names[n], f) for n, f in frac.items() if 0.0 < f < 1.0),
                                           key=lambda x: x[1]) + [(g.names[neck], 1.0)]
        got = {}
        for joint, target, below in (("chest", CHEST_T, 1.0), ("spine", SPINE_T, None)):
            below = got.get("chest", 1.0) if below is None else below
            near = [(abs(f - target), ref, f) for ref, f in line[1:-1] if f < below - 1e-6]
            if near and min(near)[0] <= SNAP:
                _, ref, f = min(near)
                self.joints[joint], got[joint] = ref, f
                continue
            pts = [x for x in line if x[1] < below - 1e-6 or x[1] == 1.0]
            for (ra, fa), (rb, fb) in zip(pts, pts[1:]):
                if fa <= target <= fb:
                    self.joints[joint] = {"lerp": [ra, rb], "t": float((target - fa) / max(fb - fa, 1e-9))}
                    break
            got[joint] = target
        keyed.setdefault(b.pelvis, "pelvis")
        # A torso bone turns with the part whose segment holds the middle of the bone (head to the next bone's
        # head): a landmark read between bones leaves each part the bones that carry most of its segment.
        ordered = sorted(frac.items(), key=lambda x: x[1]) + [(neck, 1.0)]
        for (n, f), (_, f_next) in zip(ordered, ordered[1:]):
            mid = 0.5 * (f + f_next)
            keyed.setdefault(n, "pelvis" if mid < got["spine"] else "spine" if mid < got["chest"] else "chest")
        self.map_head(head_chain, keyed)

    def midline(self, x: np.ndarray) -> bool:
        return abs(self.lateral(x)) < 0.02 * self.href

    def head_chain(self, start: int) -> list[int]:
        g = self.g

        def highest(n):
            pts = [self.p(m) for m in g.subtree(n) if not g.virtual[m]]
            pts += [g.tail[m] for m in g.subtree(n) if np.isfinite(g.tail[m][0])]
            hs = [self.height(x) for x in pts if self.midline(x)]
            return max(hs) if hs else -np.inf

        chain = [start]
        while True:
            n = chain[-1]
            kids = [k for k in g.children[n] if not g.virtual[k] and self.midline(self.p(k))]
            if not kids:
                break
            best = max(kids, key=highest)
            up_to = highest(best)
            t = g.tail[n]
            if np.isfinite(t[0]) and self.midline(t) and self.height(t) >= up_to - 0.005 * self.href:
                break           # the bone's own tail is higher than anything below it: the crown
            if up_to <= self.height(self.p(n)) + 0.005 * self.href:
                break
            chain.append(best)
        return chain

    def map_head(self, chain: list[int], keyed: dict):
        g = self.g
        neck_h = self.height(self.p(chain[0]))
        last = chain[-1]
        leaf = not [k for k in g.children[last] if not g.virtual[k]]
        tail = g.tail[last]
        head = crown = None
        if len(chain) >= 2 and leaf and self.height(self.p(last)) - neck_h >= 0.1 * self.href:
            crown = g.names[last]
            goal = neck_h + HEAD_T * (self.height(self.p(last)) - neck_h)
            cands = chain[1:-1] or None
            if cands:
                head = g.names[min(cands, key=lambda n: abs(self.height(self.p(n)) - goal))]
            else:
                head = {"lerp": [g.names[chain[0]], crown], "t": HEAD_T}
        elif (np.isfinite(tail[0]) and self.midline(tail) and self.height(tail) - neck_h >= 0.1 * self.href
              and self.height(tail) - self.height(self.p(last)) >= 0.08 * self.href):
            crown = g.names[last] + ":tail"
            head = g.names[last] if last != chain[0] else {"lerp": [g.names[last], crown], "t": HEAD_T}
        else:
            head_node = last
            if last == chain[0] and g.kind == "armature" and g.names[last] + ":tail" in g.names:
                head_node = g.names.index(g.names[last] + ":tail")
            if head_node == chain[0]:
                raise NotHumanoidError(f"'{self.name}': found a neck ('{g.names[last]}') but no head above it")
            head = g.names[head_node]
            # The head pivot a third of the way from the base of the neck to the crown, as in the training data
            # (within the head sizes real characters have).
            neck_len = np.linalg.norm(self.p(head_node) - self.p(chain[0]))
            above = np.clip(neck_len * (1.0 / HEAD_T - 1.0), 0.07 * self.href, 0.13 * self.href)
            crown = self.offset_entry(head_node, self.p(head_node) + self.up * above)
            self.fallback("no bone reaches the crown of the head: placed above the head joint")
        self.joints["head"], self.joints["head_end"] = head, crown
        head_h = self.height(self.p(g.names.index(head))) if isinstance(head, str) else np.inf
        for n in chain:
            if g.virtual[n] or g.names[n] == crown:
                continue
            keyed.setdefault(n, "neck" if self.height(self.p(n)) < head_h - 0.01 * self.href else "head")

    def confidence_checks(self):
        j = self.joints
        for a, b in (("shoulder_l", "shoulder_r"), ("hip_l", "hip_r")):
            if j[a] == j[b]:
                raise NotHumanoidError(f"'{self.name}': left and right {a[:-2]} are the same joint")
        legs = [leg["length"] for leg in self.legs]
        if abs(legs[0] - legs[1]) > 0.1 * max(legs):
            self.confidence *= 0.7
            self.notes.append("the two legs differ in length by more than 10%")
        self.confidence *= 0.95 ** self.fallbacks

    def build(self, unit_scale: float = 1.0, up_axis: str = "Z") -> tuple[dict, dict]:
        self.setup_frame()
        keyed: dict[int, str] = {}
        self.map_legs(keyed)
        self.map_arms(keyed)
        self.map_torso(keyed)
        self.place_collars()
        self.confidence_checks()
        raw = {"name": f"auto:{self.name}/{self.g.digest()}", "kind": self.g.kind, "up_axis": up_axis, "unit_scale": unit_scale,
               "description": f"automatic mapping of '{self.name}'",
               "joints": {n: self.joints[n] for n in JOINT_NAMES}}
        return raw, keyed


def _write_table(g: Graph, arm: Armature, keyed: dict[int, str], pelvis: int) -> dict:
    """Which bones to key: the body's own bones, or the control a bone follows (its real parent where the mapping
    hung it elsewhere, or the target of a full Copy Transforms / Copy Rotation)."""
    bones: dict[str, str] = {}

    def control_of(name: str) -> str:
        seen = {name}
        while True:
            b = arm.index[name]
            follow = [c.get("subtarget") for c in arm.constraints[b]
                      if c.get("type") in ("COPY_TRANSFORMS", "COPY_ROTATION") and c.get("enabled", True)
                      and c.get("influence", 1.0) > 0.99 and c.get("subtarget") in arm.index]
            if not follow or follow[0] in seen:
                return name
            name = follow[0]
            seen.add(name)

    for n, pivot in keyed.items():
        if g.virtual[n]:
            continue
        bone = g.names[g.control[n]] if n in g.control else g.names[n]
        bones.setdefault(control_of(bone), pivot)
    root = control_of(g.names[pelvis])
    bones[root] = "pelvis"
    return {"root": root, "bones": bones}


def auto_rig_map(arm: Armature) -> AutoMap:
    """The automatic mapping of an armature; NotHumanoidError names what it found where it finds no humanoid."""
    g = armature_graph(arm)
    m = _Mapper(g, arm.name, world=arm.world)
    raw, keyed = m.build()
    raw["write"] = _write_table(g, arm, keyed, m.body.pelvis)
    rig = remember_rig_map(parse_rig_map(raw, raw["name"]))
    return AutoMap(rig=rig, confidence=round(m.confidence, 3), notes=m.notes, stature=m.href)


def auto_bvh_map(clip: BvhClip, name: str = "") -> AutoMap:
    """The automatic mapping of a BVH skeleton (joint names as in the file, End Sites as 'Joint:end')."""
    try:
        g = bvh_graph(clip)
        m = _Mapper(g, name or clip.name)
    except NotHumanoidError:
        if not len(clip.motion):
            raise
        g = bvh_graph(clip, frame=0)      # a rest pose that is no standing body: read the first frame
        m = _Mapper(g, name or clip.name)
    m.setup_frame()
    axis = int(np.argmax(np.abs(m.up)))
    if abs(m.up[axis]) < 0.9 or axis == 0 or m.up[axis] < 0:
        raise RigMapError(f"'{m.name}': the skeleton stands along {np.round(m.up, 2).tolist()} in the file; "
                          "automatic mapping reads Y-up or Z-up files only")
    stature = m.href
    scale = min(_UNITS, key=lambda u: abs(np.log(stature * u / 1.7)))
    if abs(np.log(stature * scale / 1.7)) > np.log(1.6):
        scale = 1.7 / stature
    m2 = _Mapper(g, name or clip.name)
    raw, _ = m2.build(unit_scale=float(scale), up_axis="Y" if axis == 1 else "Z")
    rig = remember_rig_map(parse_rig_map(raw, raw["name"]))
    return AutoMap(rig=rig, confidence=round(m2.confidence, 3), notes=m2.notes, stature=stature * scale)
