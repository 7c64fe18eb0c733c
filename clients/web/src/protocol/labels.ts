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
  }
  return { version: string(data.version, "version"), nations, groups, policies, categories };
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
