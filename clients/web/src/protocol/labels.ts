/**
 * Labels in the page, as protocol/catalog.py and protocol/labels.py read and render them: the
 * catalog the server serves (`GET /v1/catalog`: its TOML and the directory's nations and
 * groups), a label read from its canonical form (what a message header signs) and checked
 * against the catalog, and its banner with the level's colour. The page renders the banner of
 * the label it verified, never the server's text for it.
 */
import { parse as parseToml } from "smol-toml";

export class LabelError extends Error {}

export interface Level {
  name: string;
  short: string;
  colour: string;
  marking: string;
}

export interface Policy {
  name: string;
  levels: Level[];
  /** Names a label without REL TO is releasable to; null: its originator alone. */
  defaultRelTo: string[] | null;
}

export interface Category {
  name: string;
  kind: "restrictive" | "permissive" | "informative";
  values: string[];
  prefix: string | null;
}

export interface Catalog {
  version: string;
  nations: Set<string>;
  groups: Map<string, Set<string>>;
  policies: Map<string, Policy>;
  /** In banner order, as the TOML lists them. */
  categories: Map<string, Category>;
  /** Every spelling of a level that needs no originator -> [policy, level]. */
  classifications: Map<string, [string, string]>;
  /** The dominance between levels, through the rank order and the equivalences, as
   * `ref(higher) + "\n" + ref(lower)` for every pair where higher dominates lower. */
  atLeast: Set<string>;
}

function ref(policy: string, level: string): string {
  return `${policy}\u0000${level}`;
}

/** Catalog.at_least: whether level `higher` dominates `lower`; false if incomparable. */
export function atLeast(catalog: Catalog, higher: [string, string], lower: [string, string]) {
  return catalog.atLeast.has(`${ref(...higher)}\n${ref(...lower)}`);
}

function classificationIndex(
  policies: Map<string, Policy>,
  nations: Set<string>,
): Map<string, [string, string]> {
  const index = new Map<string, [string, string]>();
  for (const policy of policies.values()) {
    for (const level of policy.levels) {
      const spellings = new Set([`${policy.name} ${level.name}`, level.marking]);
      if (!nations.has(policy.name)) spellings.add(level.short);
      for (const text of spellings) {
        if (!index.has(text)) index.set(text, [policy.name, level.name]);
      }
    }
  }
  return index;
}

function levelOrder(
  policies: Map<string, Policy>,
  equivalences: [string, string, string][],
): Set<string> {
  const below = new Map<string, Set<string>>();
  for (const policy of policies.values()) {
    const refs = policy.levels.map((level) => ref(policy.name, level.name));
    for (const r of refs) below.set(r, new Set());
    for (let i = 1; i < refs.length; i++) below.get(refs[i]!)!.add(refs[i - 1]!);
  }
  for (const [level, relation, other] of equivalences) {
    if (!below.has(level) || !below.has(other)) {
      throw new LabelError("the catalog's equivalence names an unknown level");
    }
    if (relation === "equals" || relation === "at-least") below.get(level)!.add(other);
    if (relation === "equals" || relation === "at-most") below.get(other)!.add(level);
  }
  const pairs = new Set<string>();
  for (const start of below.keys()) {
    const reached = new Set([start]);
    const todo = [start];
    while (todo.length > 0) {
      for (const next of below.get(todo.pop()!)!) {
        if (!reached.has(next)) {
          reached.add(next);
          todo.push(next);
        }
      }
    }
    for (const r of reached) pairs.add(`${start}\n${r}`);
  }
  return pairs;
}

/** What `GET /v1/catalog` answers. */
export interface CatalogRead {
  version: string;
  toml: string;
  nations: string[];
  groups: Record<string, string[]>;
}

type Table = Record<string, unknown>;

function table(value: unknown, where: string): Table {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new LabelError(`the catalog's ${where} must be a table`);
  }
  return value as Table;
}

function strings(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new LabelError(`the catalog's ${where} must be a list of strings`);
  }
  return value as string[];
}

function string(value: unknown, where: string): string {
  if (typeof value !== "string") throw new LabelError(`the catalog's ${where} must be a string`);
  return value;
}

/**
 * The catalog from its TOML (Catalog.from_toml), extended with the directory's nations and
 * groups (Catalog.with_directory). Only what reading and rendering labels needs is kept; the
 * server has checked the rest.
 */
export function catalogFromToml(
  text: string,
  directory: { nations?: string[]; groups?: Record<string, string[]> } = {},
): Catalog {
  let data: Table;
  try {
    data = parseToml(text) as Table;
  } catch (error) {
    throw new LabelError(`the catalog is not valid TOML: ${String(error)}`);
  }
  const nations = new Set([...strings(data.nations, "nations"), ...(directory.nations ?? [])]);
  const groups = new Map<string, Set<string>>();
  for (const [name, members] of Object.entries(table(data.groups, "groups"))) {
    groups.set(name, new Set(strings(members, `groups.${name}`)));
  }
  for (const [name, members] of Object.entries(directory.groups ?? {})) {
    if (!groups.has(name)) groups.set(name, new Set(strings(members, `groups.${name}`)));
  }
  const categories = new Map<string, Category>();
  for (const [name, raw] of Object.entries(table(data.categories, "categories"))) {
    const entry = table(raw, `categories.${name}`);
    const kind = string(entry.kind, `categories.${name}.kind`);
    if (kind !== "restrictive" && kind !== "permissive" && kind !== "informative") {
      throw new LabelError(`the catalog's categories.${name}.kind is unknown`);
    }
    categories.set(name, {
      name,
      kind,
      values: strings(entry.values, `categories.${name}.values`),
      prefix: entry.prefix === undefined ? null : string(entry.prefix, `categories.${name}.prefix`),
    });
  }
  const policies = new Map<string, Policy>();
  const pending: [string, string, string, string][] = [];
  for (const [name, raw] of Object.entries(table(data.policies, "policies"))) {
    const entry = table(raw, `policies.${name}`);
    if (!Array.isArray(entry.levels)) {
      throw new LabelError(`the catalog's policies.${name}.levels must be a list`);
    }
    const levels = entry.levels.map((rawLevel, i) => {
      const at = `policies.${name}.levels[${i}]`;
      const level = table(rawLevel, at);
      const levelName = string(level.name, `${at}.name`);
      return {
        name: levelName,
        short: string(level.short, `${at}.short`),
        colour: string(level.colour, `${at}.colour`),
        marking:
          level.marking === undefined
            ? `${name} ${levelName}`
            : string(level.marking, `${at}.marking`),
      };
    });
    const defaultRelTo =
      entry.default_rel_to === "originator"
        ? null
        : strings(entry.default_rel_to, `policies.${name}.default_rel_to`);
    policies.set(name, { name, levels, defaultRelTo });
    const equivalences = entry.equivalences ?? [];
    if (!Array.isArray(equivalences)) {
      throw new LabelError(`the catalog's policies.${name}.equivalences must be a list`);
    }
    equivalences.forEach((rawEq, i) => {
      const at = `policies.${name}.equivalences[${i}]`;
      const eq = table(rawEq, at);
      pending.push([
        name,
        string(eq.level, `${at}.level`),
        string(eq.relation, `${at}.relation`),
        string(eq.other, `${at}.other`),
      ]);
    });
  }
  const classifications = classificationIndex(policies, nations);
  const equivalences = pending.map(
    ([policy, levelName, relation, other]): [string, string, string] => {
      const found = classifications.get(other);
      if (found === undefined) throw new LabelError(`unknown classification "${other}"`);
      return [ref(policy, levelName), relation, ref(...found)];
    },
  );
  return {
    version: string(data.version, "version"),
    nations,
    groups,
    policies,
    categories,
    classifications,
    atLeast: levelOrder(policies, equivalences),
  };
}

export function catalogFromRead(read: CatalogRead): Catalog {
  return catalogFromToml(read.toml, { nations: read.nations, groups: read.groups });
}

/** A label as its canonical form writes it (Label.canonical). */
export interface Label {
  policy: string;
  level: string;
  categories: Record<string, string[]>;
  rel_to: string[];
  originator: string | null;
  privacy_mark: string | null;
  review_date: string | null;
}

const LABEL_KEYS = [
  "policy",
  "level",
  "categories",
  "rel_to",
  "originator",
  "privacy_mark",
  "review_date",
] as const;
const PHRASE = /^[A-Z0-9]+(?:[ -][A-Z0-9]+)*$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

function level(catalog: Catalog, policy: string, name: string): Level {
  const known = catalog.policies.get(policy);
  if (known === undefined) throw new LabelError(`unknown policy "${policy}"`);
  const found = known.levels.find((candidate) => candidate.name === name);
  if (found === undefined) {
    throw new LabelError(`unknown classification level "${name}" in policy ${policy}`);
  }
  return found;
}

function validDate(text: string): boolean {
  if (!DATE.test(text)) return false;
  const [y, m, d] = text.split("-").map(Number) as [number, number, number];
  const moment = new Date(Date.UTC(y, m - 1, d));
  return (
    moment.getUTCFullYear() === y && moment.getUTCMonth() === m - 1 && moment.getUTCDate() === d
  );
}

/**
 * The label `data` is the canonical form of (Label.from_canonical): LabelError unless it is
 * exactly that form, category values sorted and unique, and every name in it is in `catalog`.
 */
export function labelFromCanonical(data: unknown, catalog: Catalog): Label {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new LabelError("a canonical label must be a JSON object");
  }
  const record = data as Record<string, unknown>;
  for (const key of LABEL_KEYS) {
    if (!(key in record)) throw new LabelError(`canonical label lacks "${key}"`);
  }
  const unknown = Object.keys(record)
    .filter((key) => !(LABEL_KEYS as readonly string[]).includes(key))
    .sort();
  if (unknown.length > 0)
    throw new LabelError(`canonical label has the unknown key "${unknown[0]}"`);
  for (const key of ["policy", "level"] as const) {
    if (typeof record[key] !== "string") throw new LabelError(`"${key}" must be a string`);
  }
  for (const key of ["originator", "privacy_mark", "review_date"] as const) {
    if (record[key] !== null && typeof record[key] !== "string") {
      throw new LabelError(`"${key}" must be a string`);
    }
  }
  if (!isStringList(record.rel_to)) throw new LabelError('"rel_to" must be a list of strings');
  const categories = record.categories;
  if (typeof categories !== "object" || categories === null || Array.isArray(categories)) {
    throw new LabelError('"categories" must be an object');
  }
  const label: Label = {
    policy: record.policy as string,
    level: record.level as string,
    categories: {},
    rel_to: [...record.rel_to],
    originator: record.originator as string | null,
    privacy_mark: record.privacy_mark as string | null,
    review_date: record.review_date as string | null,
  };
  level(catalog, label.policy, label.level);
  let sortedAndUnique = true;
  const names = Object.keys(categories);
  if (names.some((name, i) => i > 0 && names[i - 1]! >= name)) sortedAndUnique = false;
  for (const [name, values] of Object.entries(categories as Record<string, unknown>)) {
    if (!isStringList(values))
      throw new LabelError(`"categories.${name}" must be a list of strings`);
    const category = catalog.categories.get(name);
    if (category === undefined) throw new LabelError(`unknown category "${name}"`);
    if (values.length === 0) throw new LabelError(`category ${name} has no values`);
    for (const value of [...new Set(values)].sort()) {
      if (!category.values.includes(value)) {
        throw new LabelError(`unknown value "${value}" of category ${name}`);
      }
    }
    if (values.some((value, i) => i > 0 && values[i - 1]! >= value)) sortedAndUnique = false;
    label.categories[name] = [...values];
  }
  const seen = new Set<string>();
  for (const name of label.rel_to) {
    if (!catalog.nations.has(name) && !catalog.groups.has(name)) {
      throw new LabelError(`unknown nation or group "${name}" in REL TO`);
    }
    if (seen.has(name)) throw new LabelError(`"${name}" appears twice in REL TO`);
    seen.add(name);
  }
  if (label.originator !== null && !catalog.nations.has(label.originator)) {
    throw new LabelError(`unknown originator nation "${label.originator}"`);
  }
  if (label.privacy_mark !== null && !PHRASE.test(label.privacy_mark)) {
    throw new LabelError(`invalid privacy mark "${label.privacy_mark}"`);
  }
  if (label.review_date !== null && !validDate(label.review_date)) {
    throw new LabelError(
      `invalid review date "${label.review_date}": expected a date as YYYY-MM-DD`,
    );
  }
  if (!sortedAndUnique) {
    throw new LabelError(
      "label is not in canonical form: category values must be sorted and unique",
    );
  }
  return label;
}

/** The banner of `label`, in the long form (render_label). */
export function renderLabel(label: Label, catalog: Catalog): string {
  const blocks = [level(catalog, label.policy, label.level).marking];
  for (const category of catalog.categories.values()) {
    const held = label.categories[category.name];
    if (!held || held.length === 0) continue;
    const values = category.values.filter((value) => held.includes(value));
    blocks.push(
      category.prefix === null ? values.join("/") : `${category.prefix} ${values.join(", ")}`,
    );
  }
  if (label.rel_to.length > 0) blocks.push(`REL TO ${label.rel_to.join(", ")}`);
  if (label.privacy_mark !== null) blocks.push(`PRIVACY ${label.privacy_mark}`);
  if (label.review_date !== null) blocks.push(`REVIEW ${label.review_date}`);
  return blocks.join("//");
}

/** The banner colour of `label`'s level, as the catalog gives it ("#c8102e"). */
export function labelColour(label: Label, catalog: Catalog): string {
  return level(catalog, label.policy, label.level).colour;
}

/**
 * A text colour readable on `background` ("#rrggbb"): black or white, whichever contrasts
 * more (WCAG relative luminance).
 */
export function bannerTextColour(background: string): "#000000" | "#ffffff" {
  const match = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(background);
  if (match === null) return "#000000";
  const [r, g, b] = match.slice(1).map((hex) => {
    const c = parseInt(hex, 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) ? "#000000" : "#ffffff";
}

// --- banners ---------------------------------------------------------------------------------

function items(text: string, what: string): string[] {
  const found = text.split(",").map((item) => item.trim());
  if (found.length === 1 && found[0] === "") throw new LabelError(`${what} names nothing`);
  found.forEach((item, i) => {
    if (!item) throw new LabelError(`empty entry in ${what} "${text}"`);
    if (found.indexOf(item) < i) throw new LabelError(`"${item}" appears twice in ${what}`);
  });
  return found;
}

function classification(
  text: string,
  catalog: Catalog,
  originator: string | null,
): [string, string] {
  const found = catalog.classifications.get(text);
  if (found !== undefined) return found;
  if (catalog.policies.has(text)) {
    throw new LabelError(`"${text}" names a policy but no classification level`);
  }
  const space = text.indexOf(" ");
  if (space > 0 && catalog.policies.has(text.slice(0, space))) {
    throw new LabelError(
      `unknown classification level "${text.slice(space + 1)}" in policy ${text.slice(0, space)}`,
    );
  }
  if (originator === null) {
    throw new LabelError(
      `"${text}" names no policy; a banner without one needs its originator nation`,
    );
  }
  const policy = catalog.policies.get(originator);
  if (policy === undefined) {
    throw new LabelError(`"${text}" names no policy and ${originator} has no national policy`);
  }
  const level = policy.levels.find((l) => l.name === text || l.short === text);
  if (level === undefined) {
    throw new LabelError(`unknown classification level "${text}" in policy ${originator}`);
  }
  return [policy.name, level.name];
}

/**
 * The label a banner writes (parse_label), in canonical form. `originator` is the nation the
 * item comes from: it becomes the label's originator and gives the policy of a banner that
 * names none. Banners are case-sensitive, as in Python.
 */
export function parseLabel(banner: string, catalog: Catalog, originator: string | null): Label {
  if (originator !== null && !catalog.nations.has(originator)) {
    throw new LabelError(`unknown originator nation "${originator}"`);
  }
  const blocks = banner.split("//").map((block) => block.split(/\s+/).filter(Boolean).join(" "));
  if (blocks.length === 1 && blocks[0] === "") throw new LabelError("empty banner");
  if (blocks.includes("")) throw new LabelError(`empty block in "${banner}"`);
  const [policy, levelName] = classification(blocks[0]!, catalog, originator);
  const categories = new Map<string, Set<string>>();
  let relTo: string[] | null = null;
  let privacy: string | null = null;
  let review: string | null = null;
  for (const block of blocks.slice(1)) {
    const space = block.indexOf(" ");
    const keyword = space < 0 ? block : block.slice(0, space);
    const rest = space < 0 ? "" : block.slice(space + 1);
    const prefixed = [...catalog.categories.values()].find((c) => c.prefix === keyword);
    if (keyword === "REL") {
      const toSpace = rest.indexOf(" ");
      const to = toSpace < 0 ? rest : rest.slice(0, toSpace);
      if (to !== "TO") throw new LabelError(`expected "REL TO" in "${block}"`);
      if (relTo !== null) throw new LabelError("REL TO appears twice");
      relTo = items(toSpace < 0 ? "" : rest.slice(toSpace + 1), "REL TO");
    } else if (keyword === "PRIVACY") {
      if (privacy !== null) throw new LabelError("PRIVACY appears twice");
      privacy = rest;
    } else if (keyword === "REVIEW") {
      if (review !== null) throw new LabelError("REVIEW appears twice");
      if (!validDate(rest)) {
        throw new LabelError(`invalid review date "${rest}": expected a date as YYYY-MM-DD`);
      }
      review = rest;
    } else if (prefixed !== undefined) {
      if (categories.has(prefixed.name)) throw new LabelError(`${keyword} appears twice`);
      const values = items(rest, keyword);
      for (const value of values) {
        if (!prefixed.values.includes(value)) {
          throw new LabelError(`unknown value "${value}" of category ${prefixed.name}`);
        }
      }
      categories.set(prefixed.name, new Set(values));
    } else {
      for (const value of block.split("/").map((v) => v.trim())) {
        if (!value) throw new LabelError(`empty category in "${block}"`);
        const found = [...catalog.categories.values()].find(
          (c) => c.prefix === null && c.values.includes(value),
        );
        if (found === undefined) throw new LabelError(`unknown category "${value}"`);
        const held = categories.get(found.name) ?? new Set<string>();
        if (held.has(value)) throw new LabelError(`category "${value}" appears twice`);
        held.add(value);
        categories.set(found.name, held);
      }
    }
  }
  const canonical = {
    policy,
    level: levelName,
    categories: Object.fromEntries(
      [...categories.keys()].sort().map((name) => [name, [...categories.get(name)!].sort()]),
    ),
    rel_to: relTo ?? [],
    originator,
    privacy_mark: privacy,
    review_date: review,
  };
  // The same checks as a label read from its canonical form (check_label).
  return labelFromCanonical(canonical, catalog);
}

// --- the access decision ---------------------------------------------------------------------

/** What a person is cleared for (Clearance). */
export interface Clearance {
  policy: string;
  level: string;
  categories: Record<string, string[]>;
}

/** Clearance.from_canonical: LabelError unless `data` is exactly that form, of `catalog`. */
export function clearanceFromCanonical(data: unknown, catalog: Catalog): Clearance {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new LabelError("a canonical clearance must be a JSON object");
  }
  const record = data as Record<string, unknown>;
  const keys = Object.keys(record).sort().join();
  if (keys !== "categories,level,policy") {
    throw new LabelError("a canonical clearance has exactly policy, level and categories");
  }
  // Read as a label without releasability, then held to a clearance's own rule.
  const label = labelFromCanonical(
    { ...record, rel_to: [], originator: null, privacy_mark: null, review_date: null },
    catalog,
  );
  for (const name of Object.keys(label.categories)) {
    if (catalog.categories.get(name)!.kind === "informative") {
      throw new LabelError(`category ${name} is informative; a clearance cannot hold it`);
    }
  }
  return { policy: label.policy, level: label.level, categories: label.categories };
}

/** The nations `label` is releasable to (expand_releasability). */
export function expandReleasability(label: Label, catalog: Catalog): Set<string> {
  let names = label.rel_to;
  if (names.length === 0) {
    const policy = catalog.policies.get(label.policy);
    if (policy === undefined) throw new LabelError(`unknown policy "${label.policy}"`);
    names = policy.defaultRelTo ?? (label.originator === null ? [] : [label.originator]);
  }
  const nations = new Set<string>();
  for (const name of names) {
    if (catalog.nations.has(name)) nations.add(name);
    else if (catalog.groups.has(name)) for (const n of catalog.groups.get(name)!) nations.add(n);
    else throw new LabelError(`unknown nation or group "${name}" in REL TO`);
  }
  return nations;
}

function marking(catalog: Catalog, at: [string, string]): string {
  return level(catalog, at[0], at[1]).marking;
}

function bannerValue(category: Category, value: string): string {
  return category.prefix === null ? value : `${category.prefix} ${value}`;
}

/** ceiling_excess: how `label` goes beyond a container's `ceiling`; empty when it fits. */
export function ceilingExcess(label: Label, ceiling: Label, catalog: Catalog): string[] {
  const excess: string[] = [];
  const mine: [string, string] = [label.policy, label.level];
  const limit: [string, string] = [ceiling.policy, ceiling.level];
  if (!atLeast(catalog, limit, mine)) {
    const relation = atLeast(catalog, mine, limit) ? "above" : "not comparable with";
    excess.push(`${marking(catalog, mine)} ${relation} ${marking(catalog, limit)}`);
  }
  for (const category of catalog.categories.values()) {
    if (category.kind !== "restrictive") continue;
    const allowed = ceiling.categories[category.name] ?? [];
    const held = label.categories[category.name] ?? [];
    for (const value of category.values) {
      if (held.includes(value) && !allowed.includes(value)) {
        excess.push(`category ${bannerValue(category, value)}`);
      }
    }
  }
  return excess;
}

export interface Subject {
  userId: string;
  nationality: string | null;
  clearance: Clearance | null;
}

export interface Container {
  ceiling: Label;
  members: ReadonlySet<string>;
}

function releasabilityText(label: Label, catalog: Catalog): string {
  if (label.rel_to.length > 0) return `REL TO ${label.rel_to.join(", ")}`;
  const policy = catalog.policies.get(label.policy)!;
  const names = policy.defaultRelTo ?? (label.originator === null ? [] : [label.originator]);
  if (names.length === 0) {
    return `the default releasability of ${label.policy} (the originator, and there is none)`;
  }
  return `REL TO ${names.join(", ")} (the default of ${label.policy})`;
}

/**
 * Whether `subject` may receive content labelled `label` in `container`, and every reason
 * why not (protocol/policy.py `decide`, with the same reasons in the same order). `label`,
 * `clearance` and `ceiling` were read against this catalog (labelFromCanonical, parseLabel,
 * clearanceFromCanonical), so the checks Python repeats here have been made.
 */
export function decide(
  subject: Subject,
  label: Label,
  container: Container,
  catalog: Catalog,
): { allowed: boolean; reasons: string[] } {
  const reasons: string[] = [];
  const nations = expandReleasability(label, catalog);
  const { clearance } = subject;
  if (clearance === null) {
    reasons.push("no clearance");
  } else {
    const held: [string, string] = [clearance.policy, clearance.level];
    const needed: [string, string] = [label.policy, label.level];
    if (!atLeast(catalog, held, needed)) {
      const relation = atLeast(catalog, needed, held) ? "below" : "not comparable with";
      reasons.push(`clearance ${marking(catalog, held)} ${relation} ${marking(catalog, needed)}`);
    }
    for (const category of catalog.categories.values()) {
      const required = label.categories[category.name];
      if (required === undefined) continue;
      const holds = clearance.categories[category.name] ?? [];
      if (category.kind === "restrictive") {
        for (const value of category.values) {
          if (required.includes(value) && !holds.includes(value)) {
            reasons.push(`missing category ${bannerValue(category, value)}`);
          }
        }
      } else if (category.kind === "permissive" && !required.some((v) => holds.includes(v))) {
        const values = category.values.filter((value) => required.includes(value));
        reasons.push(`missing category ${category.name}: needs one of ${values.join(", ")}`);
      }
    }
  }
  if (subject.nationality === null) {
    reasons.push("no nationality");
  } else if (!catalog.nations.has(subject.nationality)) {
    reasons.push(`unknown nationality "${subject.nationality}"`);
  } else if (!nations.has(subject.nationality)) {
    reasons.push(`nationality ${subject.nationality} not in ${releasabilityText(label, catalog)}`);
  }
  if (!container.members.has(subject.userId)) reasons.push("not a member");
  for (const excess of ceilingExcess(label, container.ceiling, catalog)) {
    reasons.push(`label above the container ceiling: ${excess}`);
  }
  return { allowed: reasons.length === 0, reasons };
}
