// Query plans and partition key ranges for the Cosmos DB test server (see cosmos.js, Fix 5).
//
// Real Cosmos DB refuses to run a cross-partition query that needs work on the client (ORDER BY,
// TOP, aggregates) through its gateway: it answers 400 with sub-status 1004, the SDK then asks
// for the query's plan, sends the plan's rewritten query to every partition key range, and
// merges, limits and aggregates the ranges' answers itself. This module gives the test server
// what it needs to take part in that exchange:
//
// - effectivePartitionKey(): where a partition key value lives, hashed as Cosmos does for
//   partition key definitions of version 2 (MurmurHash3 x64 128 of the value's binary form);
// - partitionRanges(): an even split of the hash space into N physical partition key ranges;
// - needsPlan() / planFor(): whether a query needs a plan, and the plan itself (queryInfo with
//   top, orderBy, aggregates and the rewritten query; the query ranges);
// - perRangeQuery(): how to run a rewritten query the server's query engine cannot evaluate
//   as written (an aggregate wrapped in [{"item": ...}]).
//
// The SQL printer below writes the engine's syntax tree (@zeit/cosmosdb-query) back as text, so
// that the rewritten query is ordinary Cosmos SQL that the server later runs per range.
"use strict";

// -- effective partition keys (hash version 2) -----------------------------------------------

const MASK64 = (1n << 64n) - 1n;
const C1 = 0x87c37b91114253d5n;
const C2 = 0x4cf5ad432745937fn;

function rotl64(x, r) {
  return ((x << BigInt(r)) | (x >> BigInt(64 - r))) & MASK64;
}

function fmix64(k) {
  let h = k;
  h ^= h >> 33n;
  h = (h * 0xff51afd7ed558ccdn) & MASK64;
  h ^= h >> 33n;
  h = (h * 0xc4ceb9fe1a85ec53n) & MASK64;
  h ^= h >> 33n;
  return h;
}

function readLittleEndian(bytes, start, count) {
  let value = 0n;
  for (let i = count - 1; i >= 0; i -= 1) value = (value << 8n) | BigInt(bytes[start + i]);
  return value;
}

// MurmurHash3, x64 variant, 128-bit result, seed 0: [h1, h2].
function murmur3x64128(bytes) {
  let h1 = 0n;
  let h2 = 0n;
  const blocks = Math.floor(bytes.length / 16);
  for (let b = 0; b < blocks; b += 1) {
    let k1 = readLittleEndian(bytes, b * 16, 8);
    let k2 = readLittleEndian(bytes, b * 16 + 8, 8);
    k1 = (rotl64((k1 * C1) & MASK64, 31) * C2) & MASK64;
    h1 ^= k1;
    h1 = (((rotl64(h1, 27) + h2) & MASK64) * 5n + 0x52dce729n) & MASK64;
    k2 = (rotl64((k2 * C2) & MASK64, 33) * C1) & MASK64;
    h2 ^= k2;
    h2 = (((rotl64(h2, 31) + h1) & MASK64) * 5n + 0x38495ab5n) & MASK64;
  }
  const tail = blocks * 16;
  const rest = bytes.length - tail;
  if (rest > 8) {
    let k2 = readLittleEndian(bytes, tail + 8, rest - 8);
    k2 = (rotl64((k2 * C2) & MASK64, 33) * C1) & MASK64;
    h2 ^= k2;
  }
  if (rest > 0) {
    let k1 = readLittleEndian(bytes, tail, Math.min(rest, 8));
    k1 = (rotl64((k1 * C1) & MASK64, 31) * C2) & MASK64;
    h1 ^= k1;
  }
  const length = BigInt(bytes.length);
  h1 ^= length;
  h2 ^= length;
  h1 = (h1 + h2) & MASK64;
  h2 = (h2 + h1) & MASK64;
  h1 = fmix64(h1);
  h2 = fmix64(h2);
  h1 = (h1 + h2) & MASK64;
  h2 = (h2 + h1) & MASK64;
  return [h1, h2];
}

// The binary form Cosmos hashes: a type marker, then the value (strings end with 0xFF).
function hashingBytes(value) {
  if (value === true) return Buffer.from([0x03]);
  if (value === false) return Buffer.from([0x02]);
  if (value === null || value === undefined) return Buffer.from([0x01]);
  if (typeof value === "number") {
    const out = Buffer.alloc(9);
    out[0] = 0x05;
    out.writeDoubleLE(value, 1);
    return out;
  }
  if (typeof value === "string") {
    return Buffer.concat([Buffer.from([0x08]), Buffer.from(value, "utf8"), Buffer.from([0xff])]);
  }
  // Objects and arrays are not valid partition key values; Cosmos treats {} as null.
  return Buffer.from([0x01]);
}

function hashedComponents(values) {
  const [h1, h2] = murmur3x64128(Buffer.concat(values.map(hashingBytes)));
  // Most significant byte first (h2 then h1, each big-endian); the top two bits are cleared so
  // that every key sorts below the exclusive maximum "FF".
  const hex = h2.toString(16).padStart(16, "0") + h1.toString(16).padStart(16, "0");
  const first = (parseInt(hex.slice(0, 2), 16) & 0x3f).toString(16).padStart(2, "0");
  return (first + hex.slice(2)).toUpperCase();
}

// The effective partition key of a document's partition key components. A hierarchical key
// (kind MultiHash) hashes each component on its own and joins the hashes.
function effectivePartitionKey(values, kind) {
  if (kind === "MultiHash") return values.map(v => hashedComponents([v])).join("");
  return hashedComponents(values);
}

function valueAt(doc, path) {
  let value = doc;
  for (const part of path.split("/").filter(Boolean)) {
    if (value === null || typeof value !== "object" || !(part in value)) return undefined;
    value = value[part];
  }
  return value;
}

function documentPartitionKey(doc, definition) {
  const paths = (definition && definition.paths) || ["/id"];
  return effectivePartitionKey(
    paths.map(p => valueAt(doc, p)),
    definition && definition.kind
  );
}

// N ranges splitting the hashed space [00.., 40..) evenly; the last one ends at "FF" as in Cosmos.
function partitionRanges(count) {
  const ranges = [];
  let min = "";
  for (let i = 0; i < count; i += 1) {
    const max =
      i === count - 1
        ? "FF"
        : Math.floor(((i + 1) * 0x40000000) / count)
            .toString(16)
            .padStart(8, "0")
            .toUpperCase()
            .padEnd(32, "0");
    ranges.push({ id: String(i), minInclusive: min, maxExclusive: max });
    min = max;
  }
  return ranges;
}

function inRange(epk, min, max) {
  return epk >= min && (max === "FF" || epk < max);
}

// -- printing the query engine's syntax tree back as Cosmos SQL -------------------------------

function quote(text) {
  return JSON.stringify(text);
}

function print(node) {
  switch (node.type) {
    case "sql":
      return print(node.body);
    case "select_query":
      return printQuery(node, {});
    case "identifier":
      return node.name;
    case "parameter_name":
      return node.name;
    case "undefined_constant":
      return "undefined";
    case "null_constant":
      return "null";
    case "boolean_constant":
      return node.value ? "true" : "false";
    case "number_constant":
      return String(node.value);
    case "string_constant":
      return quote(node.value);
    case "array_constant":
    case "scalar_array_expression":
      return `[${node.elements.map(print).join(", ")}]`;
    case "object_constant":
    case "scalar_object_expression":
      return `{${node.properties.map(p => `${quote(keyName(p.key))}: ${print(p.value)}`).join(", ")}}`;
    case "scalar_member_expression":
    case "collection_member_expression":
      return node.computed
        ? `${print(node.object)}[${print(node.property)}]`
        : `${print(node.object)}.${print(node.property)}`;
    case "scalar_binary_expression":
      return `(${print(node.left)} ${node.operator} ${print(node.right)})`;
    case "scalar_unary_expression":
      return `(${node.operator} ${print(node.argument)})`;
    case "scalar_conditional_expression":
      return `(${print(node.test)} ? ${print(node.consequent)} : ${print(node.alternate)})`;
    case "scalar_in_expression":
      return `(${print(node.value)} IN (${node.list.map(print).join(", ")}))`;
    case "scalar_between_expression":
      return `(${print(node.value)} BETWEEN ${print(node.begin)} AND ${print(node.end)})`;
    case "scalar_function_expression":
      return `${node.udf ? "udf." : ""}${print(node.name)}(${node.arguments.map(print).join(", ")})`;
    case "scalar_subquery_expression":
    case "collection_subquery_expression":
      return `(${print(node.expression)})`;
    case "array_subquery_expression":
      return `ARRAY(${print(node.expression)})`;
    case "exists_subquery_expression":
      return `EXISTS(${print(node.expression)})`;
    case "collection_expression":
      return print(node.expression);
    case "from_source":
      if (node.iteration) return `${print(node.alias)} IN ${print(node.expression)}`;
      return node.alias ? `${print(node.expression)} ${print(node.alias)}` : print(node.expression);
    default:
      throw unsupported(`cannot print ${node.type}`);
  }
}

function keyName(key) {
  return key.type === "identifier" ? key.name : key.value;
}

// The names the engine (and Cosmos) gives the columns of a SELECT list.
function columnNames(properties) {
  let unnamed = 0;
  return properties.map(({ property, alias }) => {
    if (alias) return alias.name;
    if (property.type === "scalar_member_expression") {
      const key = property.property;
      return String(key.type === "identifier" ? key.name : key.value);
    }
    if (property.type === "identifier") return property.name;
    unnamed += 1;
    return `$${unnamed}`;
  });
}

function printSelect(select) {
  if (select["*"]) return "*";
  if (select.value) return `VALUE ${print(select.value)}`;
  return select.properties.properties
    .map(({ property, alias }) => (alias ? `${print(property)} AS ${alias.name}` : print(property)))
    .join(", ");
}

// parts: replacements for the select list and the WHERE condition text.
function printQuery(query, parts) {
  const out = ["SELECT"];
  if (query.top) out.push(`TOP ${print(query.top.value)}`);
  out.push(parts.select !== undefined ? parts.select : printSelect(query.select));
  let text = out.join(" ");
  if (query.from) {
    const joins = (query.from.joins || []).map(j => ` JOIN ${print(j)}`).join("");
    text += `\nFROM ${print(query.from.source)}${joins}`;
  }
  const where = parts.where !== undefined ? parts.where : query.where && print(query.where.condition);
  if (where) text += `\nWHERE ${where}`;
  if (query.orderBy) {
    const items = query.orderBy.expressions.map(
      e => `${print(e.expression)}${e.order ? ` ${e.order}` : ""}`
    );
    text += `\nORDER BY ${items.join(", ")}`;
  }
  return text;
}

// -- plans -----------------------------------------------------------------------------------

const FILTER_PLACEHOLDER = "{documentdb-formattableorderbyquery-filter}";
const AGGREGATES = { COUNT: "Count", SUM: "Sum", MIN: "Min", MAX: "Max", AVG: "Average" };

class UnsupportedQuery extends Error {}

function unsupported(message) {
  return new UnsupportedQuery(`${message} (not supported by the Cosmos DB test server)`);
}

function aggregateName(node) {
  if (!node || node.type !== "scalar_function_expression" || node.udf) return undefined;
  return AGGREGATES[node.name.name.toUpperCase()];
}

function selectAggregates(select) {
  if (select.value) return aggregateName(select.value) ? [select.value] : [];
  if (select.properties) {
    return select.properties.properties.map(p => p.property).filter(p => aggregateName(p));
  }
  return [];
}

// Whether the gateway of real Cosmos would refuse the query across partitions (sub-status 1004).
function needsPlan(ast) {
  const query = ast.body;
  return Boolean(query.top || query.orderBy || selectAggregates(query.select).length);
}

function parameterValue(node, parameters) {
  if (node.type === "number_constant") return node.value;
  if (node.type === "parameter_name") {
    const found = (parameters || []).find(p => p.name === node.name);
    if (found && typeof found.value === "number") return found.value;
    throw unsupported(`TOP ${node.name} needs a number parameter`);
  }
  throw unsupported("TOP takes a number or a parameter");
}

function rootAlias(query) {
  const source = query.from && query.from.source;
  if (!source) throw unsupported("ORDER BY without FROM");
  if (source.iteration || source.alias) return source.alias.name;
  const expression = source.expression.expression || source.expression;
  if (expression.type !== "identifier") throw unsupported("ORDER BY over a subquery source");
  return expression.name;
}

function withFilter(query) {
  // The printer parenthesises every binary expression, so the condition stays one operand.
  const condition = query.where ? `${print(query.where.condition)} AND ` : "";
  return `${condition}(${FILTER_PLACEHOLDER})`;
}

// The plan of a query, shaped as the gateway's answer to a query plan request.
function planFor(ast, parameters) {
  const query = ast.body;
  const aggregates = selectAggregates(query.select);
  const info = {
    distinctType: "None",
    top: query.top ? parameterValue(query.top.value, parameters) : null,
    offset: null,
    limit: null,
    orderBy: [],
    orderByExpressions: [],
    groupByExpressions: [],
    groupByAliases: [],
    aggregates: [],
    groupByAliasToAggregateType: {},
    rewrittenQuery: "",
    hasSelectValue: Boolean(query.select.value),
    hasNonStreamingOrderBy: false
  };
  if (aggregates.length) {
    if (!query.select.value) throw unsupported("aggregates across partitions without SELECT VALUE");
    if (query.orderBy) throw unsupported("ORDER BY with an aggregate");
    const name = aggregateName(query.select.value);
    if (name === "Average") throw unsupported("AVG across partitions");
    info.aggregates = [name];
    info.rewrittenQuery = printQuery(query, {
      select: `VALUE [{"item": ${print(query.select.value)}}]`
    });
  } else if (query.orderBy) {
    const expressions = query.orderBy.expressions;
    info.orderBy = expressions.map(e => (e.order === "DESC" ? "Descending" : "Ascending"));
    info.orderByExpressions = expressions.map(e => print(e.expression));
    const items = expressions.map(e => `{"item": ${print(e.expression)}}`).join(", ");
    let payload;
    const { select } = query;
    if (select["*"]) payload = rootAlias(query);
    else if (select.value) payload = print(select.value);
    else {
      const names = columnNames(select.properties.properties);
      const fields = select.properties.properties.map(
        ({ property }, i) => `${quote(names[i])}: ${print(property)}`
      );
      payload = `{${fields.join(", ")}}`;
    }
    info.rewrittenQuery = printQuery(query, {
      select: `${rootAlias(query)}._rid, [${items}] AS orderByItems, ${payload} AS payload`,
      where: withFilter(query)
    });
  }
  return {
    partitionedQueryExecutionInfoVersion: 2,
    queryInfo: info,
    queryRanges: [{ min: "", max: "FF", isMinInclusive: true, isMaxInclusive: false }]
  };
}

// A rewritten aggregate, SELECT VALUE [{"item": AGG(...)}], which the engine cannot evaluate
// (it only knows aggregates at the top of the select list): the query to run instead, and how
// to wrap its single value. Other queries run as they are.
function perRangeQuery(ast) {
  const query = ast.body;
  const value = query.select && query.select.value;
  const element = value && value.type === "scalar_array_expression" && value.elements.length === 1
    ? value.elements[0]
    : null;
  const property = element && element.type === "scalar_object_expression" && element.properties.length === 1
    ? element.properties[0]
    : null;
  if (!property || keyName(property.key) !== "item" || !aggregateName(property.value)) return null;
  return {
    text: printQuery(query, { select: `VALUE ${print(property.value)}` }),
    wrap: rows => rows.map(v => (v === undefined ? [{}] : [{ item: v }]))
  };
}

module.exports = {
  UnsupportedQuery,
  documentPartitionKey,
  effectivePartitionKey,
  inRange,
  needsPlan,
  partitionRanges,
  perRangeQuery,
  planFor,
  print
};
