#!/usr/bin/env node
// Starts @vercel/cosmosdb-server (an in-memory Cosmos DB NoSQL-API server) on loopback, with
// the few fixes our tests need so that it answers like the real service where we depend on it.
//
//   node tools/emulators/cosmos.js [--port N] [--host 127.0.0.1] [--partition-ranges N]
//
// Port 0 (the default) picks a free port. Every container is split into N physical partition
// key ranges (4 by default; see Fix 5). Once listening it prints one line,
//   COSMOS_READY https://127.0.0.1:PORT
// which the test fixtures and `make run-azure` wait for. SIGTERM/SIGINT stop it.
//
// Gaps of the server that we design around in dicom_core/storage/azure instead of patching
// here (each is commented there too):
// - no OFFSET/LIMIT, DISTINCT, GROUP BY or LIKE in queries: we page with TOP and continuation
//   tokens, keep ModalitiesInStudy as a precomputed array, and match wildcards with
//   STARTSWITH/RegexMatch. Real Cosmos supports all four, but OFFSET is costly there anyway.
//   (Fix 5 therefore plans ORDER BY, TOP and SELECT VALUE aggregates only.)
// - the partition-key header does not scope queries (real Cosmos answers only from the named
//   logical partition): every query we send names its partition key in the WHERE clause too.
"use strict";

const fs = require("fs");
const path = require("path");
const vm = require("vm");
const queryPlan = require("./query-plan.js");

const serverLib = path.join(
  path.dirname(require.resolve("@vercel/cosmosdb-server/package.json")),
  "lib"
);

function parseArgs(argv) {
  const args = { port: 0, host: "127.0.0.1", partitionRanges: 4 };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === "--port") args.port = parseInt(argv[(i += 1)], 10);
    else if (argv[i] === "--host") args.host = argv[(i += 1)];
    else if (argv[i] === "--partition-ranges") args.partitionRanges = parseInt(argv[(i += 1)], 10);
  }
  if (!(args.partitionRanges >= 1 && args.partitionRanges <= 64)) {
    throw new Error("--partition-ranges takes a number from 1 to 64");
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));

// --- Fix 1: reading a missing item answers 404, not 500 ----------------------------------
// Real Cosmos answers a point read of a missing item with 404 NotFound (sub-status 0). The
// server's read handler dereferences the missing document while checking partition-key
// components and throws, which becomes a 500. We must patch the handler module before
// routes.js reads it, because the route table captures the function when it is loaded.
const readDocument = require(path.join(serverLib, "handler", "read-document.js"));
const partitionHeader = require(path.join(serverLib, "utils", "get-partition-from-header.js"));
const originalReadDocument = readDocument.default;
readDocument.default = (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  if (collection.read()) {
    const header = partitionHeader.default(req);
    let partition;
    try {
      partition = partitionHeader.parsePartitionKey(header, params.docId);
    } catch (err) {
      partition = undefined;
    }
    if (partition !== undefined && !collection.document(params.docId, partition).read()) {
      res.statusCode = 404;
      return {
        code: "NotFound",
        message: "Entity with the specified id does not exist in the system."
      };
    }
  }
  return originalReadDocument(account, req, res, params);
};

// --- Fix 8: hierarchical partition keys (MultiHash) key documents by every component -------
// Real Cosmos keys a document of a container whose partition key has several paths
// ({paths: ["/dp", "/pk"], kind: "MultiHash", version: 2}) by all its components: two
// documents with one id and one first component but different second components are two
// documents, and point operations and transactional batches name the full key (a JSON array in
// the x-ms-documentdb-partitionkey header). Only a query may name a prefix of it, which the SDK
// turns into a range of effective partition keys (Fix 5 hashes MultiHash keys per component).
// The server kept only the first path: it keyed documents by that component alone (so the
// second document above was a 409) and read only the first element of an array header. A
// multi-path key now becomes the JSON text of all its components, on both sides; single-path
// containers are unchanged. As for every query, a prefix or full key names the documents of
// whole key ranges here, not of one logical partition: queries filter on the key fields too.
const Items = require(path.join(serverLib, "account", "items.js")).default;
const getValue = require(path.join(serverLib, "utils", "get-value.js")).default;
const singlePathPartition = Items.prototype._getPartition;

Items.prototype._getPartition = function partitionOf(data) {
  const paths = this._partitionKeyPath || [];
  if (paths.length <= 1) return singlePathPartition.call(this, data);
  // A missing component is null, as the SDK writes None in a key.
  const components = paths.map(p => {
    const value = getValue(p.slice(1).split("/"), data);
    return value === undefined ? null : value;
  });
  return JSON.stringify(components);
};

const singleComponentKey = partitionHeader.parsePartitionKey;
partitionHeader.parsePartitionKey = (value, defaultValue) => {
  let parsed;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    return singleComponentKey(value, defaultValue); // which reports the malformed header
  }
  if (Array.isArray(parsed) && parsed.length > 1) return JSON.stringify(parsed);
  return singleComponentKey(value, defaultValue);
};

// --- Fix 2: transactional batch is atomic and takes the partition key from the header ---------
// Real Cosmos runs a transactional batch (all operations in one logical partition) atomically:
// if one operation fails, none is applied, the failed one reports its status and the others
// 424. The server reads each operation's partition key from the operation itself, which the
// Python SDK never sends (it names the partition once, in the request header), so every
// operation failed; and operations that did succeed before a failure stayed applied. This
// handler applies the operations in order, remembers each document's previous state, and
// restores those states in reverse order when an operation fails.
const batchModule = require(path.join(serverLib, "handler", "batch-documents.js"));
const documentOperations = require(path.join(serverLib, "handler", "_document-operations.js"));
const readJson = require(path.join(serverLib, "json.js")).default;
const trueHeader = require(path.join(serverLib, "true-header.js")).default;

// --- Fix 7: items nested deeper than 128 levels are refused ---------------------------------
// Real Cosmos refuses an item whose objects and arrays nest more than 128 levels (the service
// quotas page, "Maximum level of nesting for embedded objects / arrays"); this server stores
// any depth, which hid that a deeply nested workitem could not be stored on Azure. Creates,
// replaces and upserts, alone or in a batch, now answer 400 as the service does.
const MAX_ITEM_NESTING = 128;

function nestingDepth(value) {
  // Iterative, so a document nested far past the limit cannot overflow the stack here.
  let deepest = 0;
  const stack = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop();
    if (current === null || typeof current !== "object") continue;
    if (depth > deepest) deepest = depth;
    if (deepest > MAX_ITEM_NESTING) return deepest;
    for (const child of Object.values(current)) stack.push([child, depth + 1]);
  }
  return deepest;
}

for (const name of ["createOperation", "replaceOperation", "upsertOperation"]) {
  const original = documentOperations[name];
  documentOperations[name] = (collection, input) => {
    if (nestingDepth(input.resourceBody) > MAX_ITEM_NESTING) {
      return {
        statusCode: 400,
        body: {
          code: "BadRequest",
          message: `The item nests objects or arrays more than ${MAX_ITEM_NESTING} levels deep.`
        }
      };
    }
    return original(collection, input);
  };
}

const OPERATIONS = {
  Create: documentOperations.createOperation,
  Upsert: documentOperations.upsertOperation,
  Read: documentOperations.readOperation,
  Delete: documentOperations.deleteOperation,
  Replace: documentOperations.replaceOperation
};

batchModule.default = async (account, req, res, params) => {
  const body = await readJson(req);
  const collection = account.database(params.dbId).collection(params.collId);
  if (!collection.read()) {
    res.statusCode = 404;
    return {};
  }
  if (!Array.isArray(body)) {
    res.statusCode = 400;
    return { message: "Invalid request body" };
  }
  const atomic = trueHeader(req, "x-ms-cosmos-batch-atomic") || !trueHeader(req, "x-ms-cosmos-batch-continue-on-error");
  const headerKey = partitionHeader.default(req);
  const documents = collection.documents;
  const undo = [];
  const results = [];
  let failedAt = -1;
  for (let i = 0; i < body.length; i += 1) {
    const op = body[i] || {};
    const run = OPERATIONS[op.operationType];
    if (!run) {
      res.statusCode = 400;
      return { message: `Operation type '${op.operationType}' is not supported in Batch.` };
    }
    const id = op.id || (op.resourceBody && op.resourceBody.id);
    const input = { ...op, partitionKey: op.partitionKey !== undefined ? op.partitionKey : headerKey };
    let partition;
    try {
      partition = partitionHeader.parsePartitionKey(input.partitionKey, id);
    } catch (err) {
      partition = id;
    }
    const before = id ? collection.document(id, partition).read() : undefined;
    // Real Cosmos checks If-None-Match "*" on create-like operations in a batch too.
    if (op.ifNoneMatch === "*" && before) {
      results.push({ statusCode: 409, requestCharge: 0 });
      failedAt = i;
      break;
    }
    const result = run(collection, input);
    if (result.statusCode >= 400) {
      results.push({ statusCode: result.statusCode, requestCharge: 0 });
      failedAt = i;
      break;
    }
    undo.push({ id, partition, before: before ? { ...before } : undefined });
    results.push({
      statusCode: result.statusCode || 200,
      requestCharge: 1,
      eTag: result.body ? result.body._etag : undefined,
      resourceBody: result.body
    });
  }
  if (failedAt >= 0 && atomic) {
    for (let j = undo.length - 1; j >= 0; j -= 1) {
      const { id, partition, before } = undo[j];
      if (collection.document(id, partition).read()) documents.delete(id, partition);
      // Put the earlier version back exactly (same _rid, _etag and _ts).
      if (before) documents._set(before);
    }
    const failed = results[failedAt];
    const answer = body.map((_, k) => (k === failedAt ? failed : { statusCode: 424, requestCharge: 0 }));
    // Real Cosmos answers a failed batch with 207 Multi-Status and the per-operation results.
    res.statusCode = 207;
    return answer;
  }
  return results;
};

// --- Fix 5: cross-partition queries go through query plans, as on real Cosmos --------------
// The server keeps one partition key range per container and runs every query whole, so the
// SDK never sees what real Cosmos makes it do for a cross-partition query with ORDER BY, TOP or
// an aggregate: the gateway refuses it (400, sub-status 1004), the SDK asks for the query plan,
// sends the plan's rewritten query to each partition key range (rows shaped
// {_rid, orderByItems, payload}), and merges, limits and aggregates the answers itself. Here:
// - every container has N partition key ranges, splitting the hash space evenly; a document
//   belongs to the range holding its effective partition key, hashed as Cosmos does;
// - a query with neither a partition key nor a range names, that needs a plan, answers 400 with
//   sub-status 1004 (other cross-partition queries are answered whole, as the gateway does);
// - a query plan request answers the plan (query-plan.js writes the rewritten query);
// - a query naming a partition key range (and, for a feed range, start and end keys) runs on
//   that range's documents only.
// A query naming a partition key still runs on every document (see the gaps above).
const collectionModule = require(path.join(serverLib, "account", "collection.js"));
const PartitionKeyRanges = require(path.join(serverLib, "account", "partition-key-ranges.js")).default;
const BaseCollection = collectionModule.default;

collectionModule.default = class extends BaseCollection {
  constructor(data) {
    super(data);
    if (data) {
      this.partitionKeyRanges = new PartitionKeyRanges(this, ["/id"]);
      for (const range of queryPlan.partitionRanges(args.partitionRanges)) {
        this.partitionKeyRanges.create({
          ...range,
          ridPrefix: Number(range.id),
          throughputFraction: 1 / args.partitionRanges,
          status: "online",
          parents: []
        });
      }
    }
  }
};

const queryModule = require(path.join(serverLib, "handler", "query-documents.js"));
const readItems = require(path.join(serverLib, "handler", "_read-items.js")).default;
const cosmosQuery = require(require.resolve("@zeit/cosmosdb-query", { paths: [serverLib] }));

function headerValue(req, name) {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

// Effective partition keys by partition key value: hashing is the costly part of a range query.
const effectiveKeys = new Map();

function effectiveKeyOf(doc, definition) {
  const paths = (definition && definition.paths) || ["/id"];
  if (!paths.every(p => p.lastIndexOf("/") === 0)) {
    return queryPlan.documentPartitionKey(doc, definition);
  }
  const key = JSON.stringify([definition && definition.kind, paths.map(p => doc[p.slice(1)])]);
  let epk = effectiveKeys.get(key);
  if (epk === undefined) {
    epk = queryPlan.documentPartitionKey(doc, definition);
    if (effectiveKeys.size >= 100000) effectiveKeys.clear();
    effectiveKeys.set(key, epk);
  }
  return epk;
}

// The documents of the range the request names, or undefined if it names none.
function rangeDocuments(collection, req, documents) {
  const rangeId = headerValue(req, "x-ms-documentdb-partitionkeyrangeid");
  if (rangeId === undefined) return undefined;
  const id = String(rangeId).split(",").pop();
  const range = collection.partitionKeyRanges._item("/id", id, id).read();
  if (!range) {
    const err = new Error(`partition key range ${id} does not exist`);
    err.goneRange = true;
    throw err;
  }
  const start = headerValue(req, "x-ms-start-epk");
  const end = headerValue(req, "x-ms-end-epk");
  const min = start !== undefined && start > range.minInclusive ? start : range.minInclusive;
  const max = end !== undefined && (range.maxExclusive === "FF" || end < range.maxExclusive)
    ? end
    : range.maxExclusive;
  const definition = collection.read().partitionKey;
  return documents.filter(doc => queryPlan.inRange(effectiveKeyOf(doc, definition), min, max));
}

function badRequest(res, message) {
  res.statusCode = 400;
  return { code: "BadRequest", message };
}

queryModule.default = async (account, req, res, params) =>
  readItems(req, res, "Documents", async ({ continuation, maxItemCount }) => {
    const body = await readJson(req);
    if (!body.query) return badRequest(res, "missing query");
    const collection = account.database(params.dbId).collection(params.collId);
    const container = collection.read();
    if (!container) return null;
    const items = collection.documents;
    const query = items._getQuery(body.query);
    const named =
      headerValue(req, "x-ms-documentdb-partitionkey") !== undefined ||
      headerValue(req, "x-ms-documentdb-partitionkeyrangeid") !== undefined;
    if (!named) {
      const paths = (container.partitionKey || {}).paths || [];
      if (
        !trueHeader(req, "x-ms-documentdb-query-enablecrosspartition") &&
        paths.length &&
        !query.containsPartitionKeys(paths)
      ) {
        return badRequest(res, "missing partition keys");
      }
      if (queryPlan.needsPlan(query.ast)) {
        let plan;
        try {
          plan = queryPlan.planFor(query.ast, body.parameters);
        } catch (err) {
          if (err instanceof queryPlan.UnsupportedQuery) return badRequest(res, err.message);
          throw err;
        }
        res.setHeader("x-ms-substatus", "1004");
        return {
          ...badRequest(res, "The cross-partition query needs a query plan: ask for it and run it per partition key range."),
          additionalErrorInfo: JSON.stringify(plan)
        };
      }
    }
    let documents = [...items._data.values()].map(item => item.read());
    try {
      documents = rangeDocuments(collection, req, documents) || documents;
    } catch (err) {
      if (!err.goneRange) throw err;
      res.statusCode = 410;
      res.setHeader("x-ms-substatus", "1002");
      return { code: "Gone", message: err.message };
    }
    const perRange = queryPlan.perRangeQuery(query.ast);
    const run = perRange ? cosmosQuery.default(perRange.text) : query;
    const compositeIndexes = (container.indexingPolicy || {}).compositeIndexes || [];
    let result;
    try {
      result = run.exec(documents, {
        parameters: body.parameters,
        udf: items._userDefinedFunctions(),
        maxItemCount,
        continuation,
        compositeIndexes
      });
    } catch (err) {
      return badRequest(res, err.message);
    }
    return perRange ? { ...result, result: perRange.wrap(result.result) } : result;
  });

// The answer to a query plan request (POST on docs with x-ms-cosmos-is-query-plan-request).
async function answerQueryPlan(account, req, res, params) {
  const body = await readJson(req);
  if (!account.database(params.dbId).collection(params.collId).read()) {
    res.statusCode = 404;
    return {};
  }
  try {
    return queryPlan.planFor(cosmosQuery.default(body.query || "").ast, body.parameters);
  } catch (err) {
    if (err instanceof cosmosQuery.SyntaxError || err instanceof queryPlan.UnsupportedQuery) {
      return badRequest(res, err.message);
    }
    throw err;
  }
}

// --- Fix 3: a 404 on documents because their container (or database) is gone says so -----
// Real Cosmos marks "the owner resource does not exist" with x-ms-substatus 1003, so a client
// can tell a missing item from a missing container (after this in-memory server restarts,
// every container is gone; our adapter then recreates its containers and retries).
const routesModule = require(path.join(serverLib, "routes.js"));
const originalRoute = routesModule.default;
routesModule.default = req => {
  const found = originalRoute(req);
  if (!found) return found;
  const [params] = found;
  // A query plan request is a POST without the query header: the table takes it for a create.
  const planRequest =
    trueHeader(req, "x-ms-cosmos-is-query-plan-request") && params.collId && !params.docId;
  const handler = planRequest ? answerQueryPlan : found[1];
  const wrapped = async (account, request, res, routeParams) => {
    const body = await handler(account, request, res, routeParams);
    const onDocuments = /\/docs(\/|\?|$)/.test(request.url || "");
    if (res.statusCode === 404 && onDocuments) {
      const database = account.database(routeParams.dbId);
      if (!database.read() || !database.collection(routeParams.collId).read()) {
        res.setHeader("x-ms-substatus", "1003");
      }
    }
    return body;
  };
  return [params, wrapped];
};

// --- Fix 6: the SQL parser takes linear time, not exponential -------------------------------
// @zeit/cosmosdb-query parses with PEG.js code generated without PEG.js's result cache, so each
// level of parentheses re-parses the text inside it once per precedence level the grammar
// tries: parsing grows about tenfold per level (measured: 6 levels 25 s, 7 levels 265 s). The
// rewritten queries of query plans (Fix 5; query-plan.js prints every binary expression in
// parentheses) nest one level per AND, so a QIDO query with four conditions took tens of
// seconds to parse; the server has one thread, so every other request waited behind it and
// clients saw connection timeouts. The cure is what PEG.js's `cache` option generates (packrat
// parsing): each rule remembers, per input position, its result and where it ended, so it runs
// at most once per position. The grammar's actions only build new nodes from their arguments,
// so reusing a remembered result is safe. We add that memo to every rule function of the
// shipped parser when the server starts. A query the memoizing parser rejects is parsed again
// by the original one, so that the server's error message stays the same (the original lists
// every expected token; the memo skips those of remembered failures).
function memoizeSqlParser() {
  const queryLib = path.dirname(require.resolve("@zeit/cosmosdb-query", { paths: [serverLib] }));
  const file = path.join(queryLib, "parser.js");
  const parser = require(file);
  const entry = "function peg$parse(input, options) {\n";
  const rule = /^ {2}function (peg\$parse[A-Za-z0-9_]+)\(\) \{$/gm;
  let rules = 0;
  let source = fs.readFileSync(file, "utf8").replace(rule, (line, name) => {
    const id = rules;
    rules += 1;
    return [
      `  function ${name}() {`,
      `    var key = peg$currPos * RULE_COUNT + ${id}, memo = peg$memo.get(key);`,
      "    if (memo !== undefined) { peg$currPos = memo.end; return memo.result; }",
      `    var result = ${name}$once();`,
      "    peg$memo.set(key, { end: peg$currPos, result: result });",
      "    return result;",
      "  }",
      "",
      `  function ${name}$once() {`
    ].join("\n");
  });
  if (rules === 0 || !source.includes(entry)) {
    throw new Error(`unexpected layout of ${file}: cannot memoize its rules`);
  }
  source = source
    .replace(/RULE_COUNT/g, String(rules))
    .replace(entry, `${entry}  var peg$memo = new Map();\n`);
  const memoized = { exports: {} };
  vm.runInThisContext(`(function (module, exports) {\n${source}\n})`, { filename: file })(
    memoized,
    memoized.exports
  );
  const original = parser.parse;
  // The module object is shared, so every user of the parser, loaded before or after, sees this.
  parser.parse = (input, options) => {
    try {
      return memoized.exports.parse(input, options);
    } catch (err) {
      if (!(err instanceof memoized.exports.SyntaxError)) throw err;
      return original(input, options);
    }
  };
}

memoizeSqlParser();

// index.js reads "./routes" through require's cache, so it sees the wrapped router.
const { createHttpsServer } = require(path.join(serverLib, "index.js"));

// --- Fix 4: keep-alive ---------------------------------------------------------------------
// The server sends `Connection: close` on every response unless asked otherwise, so each SDK
// call pays a new TCP and TLS handshake (40-60 ms). Real Cosmos keeps connections open; the
// server's own keepAlive option restores that.
const server = createHttpsServer({ keepAlive: true });
server.keepAliveTimeout = 120000;
server.headersTimeout = 125000;

server.listen(args.port, args.host, () => {
  const { port } = server.address();
  process.stdout.write(`COSMOS_READY https://${args.host}:${port}\n`);
});

function stop() {
  server.close(() => process.exit(0));
  // Open keep-alive connections would hold close() back; they carry no state worth waiting for.
  if (typeof server.closeAllConnections === "function") server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
