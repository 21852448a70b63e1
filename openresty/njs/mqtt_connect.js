// mqtt_connect.js: the CONNECT parser of openresty/lua/mqtt_connect.lua ported to njs,
// for nginx builds without the stream Lua module (Debian's nginx + libnginx-mod-stream-js;
// the end-to-end test runs it). Same rules, same results: the test runs both parsers on
// the same inputs and requires identical answers.
//
// Written for njs 0.7 (Debian 12): ES5 functions and var, Buffer input. It also loads as
// an ES module in Node.js (the test imports it).
//
//   parse(buf, maxLen)    -> {status: 'ok', value: id} | {status: 'more', value: n}
//                            | {status: 'invalid', value: reason}
//   clientId(buf, maxLen) -> the client id, or 'unknown'
//   preread(s)            -> js_preread handler: sets $mqtt_client_id to the client id, or
//                            to the remote address when there is none (see README.md).

var UNKNOWN = 'unknown';
var DEFAULT_MAX_LEN = 16384;
var MAX_VARINT_BYTES = 4;

// Variable byte integer at buf[p]; reads no byte beyond `last` (inclusive, 0-based).
// Returns {value, next} | {more: true} | null (invalid).
function varint(buf, p, last) {
    var value = 0, mult = 1;
    for (var i = 0; i < MAX_VARINT_BYTES; i++) {
        if (p + i > last) { return { more: true }; }
        var b = buf[p + i];
        value += (b & 127) * mult;
        if ((b & 128) === 0) { return { value: value, next: p + i + 1 }; }
        mult *= 128;
    }
    return null;
}

// Length-prefixed field at buf[p] within last: {start, end (exclusive), next} | null.
function field(buf, p, last) {
    if (p + 1 > last) { return null; }
    var len = buf[p] * 256 + buf[p + 1];
    var start = p + 2;
    if (start + len - 1 > last) { return null; }
    return { start: start, end: start + len, next: start + len };
}

function cont(c) {
    return c !== undefined && c >= 0x80 && c <= 0xBF;
}

// Well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF) without U+0000; [s, e).
function utf8Ok(buf, s, e) {
    var i = s;
    while (i < e) {
        var c = buf[i];
        if (c === 0) {
            return false;
        } else if (c < 0x80) {
            i += 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= e || !cont(buf[i + 1])) { return false; }
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= e) { return false; }
            var c2 = buf[i + 1], c3 = buf[i + 2];
            if (!cont(c2) || !cont(c3)) { return false; }
            if (c === 0xE0 && c2 < 0xA0) { return false; }
            if (c === 0xED && c2 >= 0xA0) { return false; }
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= e) { return false; }
            var d2 = buf[i + 1], d3 = buf[i + 2], d4 = buf[i + 3];
            if (!cont(d2) || !cont(d3) || !cont(d4)) { return false; }
            if (c === 0xF0 && d2 < 0x90) { return false; }
            if (c === 0xF4 && d2 >= 0x90) { return false; }
            i += 4;
        } else {
            return false;
        }
    }
    return true;
}

// BYTE, TWO and FOUR are also their sizes in bytes.
var BYTE = 1, TWO = 2, FOUR = 4, STRING = 6, BINARY = 7, PAIR = 8;
var CONNECT_PROPS = {
    0x11: FOUR, 0x21: TWO, 0x27: FOUR, 0x22: TWO, 0x19: BYTE, 0x17: BYTE,
    0x26: PAIR, 0x15: STRING, 0x16: BINARY
};
var WILL_PROPS = {
    0x18: FOUR, 0x01: BYTE, 0x02: FOUR, 0x03: STRING, 0x08: STRING, 0x09: BINARY,
    0x26: PAIR
};
var USER_PROPERTY = 0x26;

// Properties block at buf[p] within last: {next} | {error}.
function properties(buf, p, last, allowed) {
    var len = varint(buf, p, last);
    if (len === null || len.more) { return { error: 'malformed property length' }; }
    var q = len.next;
    var pend = q + len.value - 1;
    if (pend > last) { return { error: 'property length beyond packet' }; }
    var seen = {};
    while (q <= pend) {
        var id = buf[q];
        var kind = Object.prototype.hasOwnProperty.call(allowed, id) ? allowed[id] : undefined;
        if (kind === undefined) { return { error: 'unknown property' }; }
        if (id !== USER_PROPERTY) {
            if (seen[id]) { return { error: 'duplicate property' }; }
            seen[id] = true;
        }
        q += 1;
        if (kind === BYTE || kind === TWO || kind === FOUR) {
            q += kind;
            if (q - 1 > pend) { return { error: 'truncated property' }; }
        } else if (kind === STRING || kind === BINARY) {
            var f = field(buf, q, pend);
            if (f === null) { return { error: 'truncated property' }; }
            q = f.next;
        } else {
            var k = field(buf, q, pend);
            if (k === null) { return { error: 'truncated property' }; }
            var v = field(buf, k.next, pend);
            if (v === null) { return { error: 'truncated property' }; }
            q = v.next;
        }
    }
    return { next: pend + 1 };
}

function bytesToString(buf, start, end) {
    // Node's and njs's Buffer both decode UTF-8 here (already checked well-formed).
    return buf.slice(start, end).toString('utf8');
}

// Variable header and payload, buf[p .. last]: {id} | {error}.
function connectBody(buf, p, last) {
    var nameField = field(buf, p, last);
    if (nameField === null) { return { error: 'truncated protocol name' }; }
    var name = bytesToString(buf, nameField.start, nameField.end);
    var q = nameField.next;
    if (q + 3 > last) { return { error: 'truncated variable header' }; }
    var level = buf[q] & 0x7F;
    var flags = buf[q + 1];
    q += 4;
    if (name === 'MQTT') {
        if (level !== 4 && level !== 5) { return { error: 'unsupported protocol level' }; }
    } else if (name === 'MQIsdp') {
        if (level !== 3) { return { error: 'unsupported protocol level' }; }
    } else {
        return { error: 'unknown protocol name' };
    }

    if ((flags & 0x01) !== 0) { return { error: 'reserved connect flag set' }; }
    var will = (flags & 0x04) !== 0;
    var willQos = (flags >> 3) & 0x03;
    var willRetain = (flags & 0x20) !== 0;
    var hasPassword = (flags & 0x40) !== 0;
    var hasUsername = (flags & 0x80) !== 0;
    if (willQos === 3) { return { error: 'will QoS 3' }; }
    if (!will && (willQos !== 0 || willRetain)) { return { error: 'will QoS/retain without will' }; }
    if (hasPassword && !hasUsername && level < 5) { return { error: 'password without user name' }; }

    var r;
    if (level === 5) {
        r = properties(buf, q, last, CONNECT_PROPS);
        if (r.error) { return r; }
        q = r.next;
    }

    var idField = field(buf, q, last);
    if (idField === null) { return { error: 'truncated client id' }; }
    if (!utf8Ok(buf, idField.start, idField.end)) { return { error: 'client id is not well-formed UTF-8' }; }
    q = idField.next;

    var f;
    if (will) {
        if (level === 5) {
            r = properties(buf, q, last, WILL_PROPS);
            if (r.error) { return r; }
            q = r.next;
        }
        f = field(buf, q, last);
        if (f === null) { return { error: 'truncated will topic' }; }
        f = field(buf, f.next, last);
        if (f === null) { return { error: 'truncated will payload' }; }
        q = f.next;
    }
    if (hasUsername) {
        f = field(buf, q, last);
        if (f === null) { return { error: 'truncated user name' }; }
        q = f.next;
    }
    if (hasPassword) {
        f = field(buf, q, last);
        if (f === null) { return { error: 'truncated password' }; }
        q = f.next;
    }
    if (q !== last + 1) { return { error: 'bytes left after the last field' }; }
    return { id: bytesToString(buf, idField.start, idField.end) };
}

function parse(buf, maxLen) {
    if (buf === null || buf === undefined || typeof buf.length !== 'number') {
        return { status: 'invalid', value: 'not a buffer' };
    }
    if (typeof maxLen !== 'number' || !(maxLen >= 2)) { maxLen = DEFAULT_MAX_LEN; }
    var n = buf.length;
    if (n === 0) { return { status: 'more', value: 2 }; }
    if (buf[0] !== 0x10) { return { status: 'invalid', value: 'first packet is not a CONNECT' }; }
    var rl = varint(buf, 1, n - 1);
    if (rl === null) { return { status: 'invalid', value: 'malformed remaining length' }; }
    if (rl.more) { return { status: 'more', value: n + 1 }; }
    var total = rl.next + rl.value;
    if (total > maxLen) { return { status: 'invalid', value: 'CONNECT longer than ' + maxLen + ' bytes' }; }
    if (n < total) { return { status: 'more', value: total }; }
    var body = connectBody(buf, rl.next, total - 1);
    if (body.error) { return { status: 'invalid', value: body.error }; }
    return { status: 'ok', value: body.id };
}

function clientId(buf, maxLen) {
    try {
        var r = parse(buf, maxLen);
        if (r.status === 'ok' && r.value !== '') { return r.value; }
    } catch (e) {
        // never reached by construction; a routing decision must not fail a connection
    }
    return UNKNOWN;
}

// js_preread handler. In the preread phase njs hands the callback the whole preread
// buffer so far (nginx does not consume it), so `data` is the connection's first bytes.
// Never waits for more than $mqtt_connect_max bytes (keep it <= preread_buffer_size);
// a connection that does not complete its CONNECT within preread_timeout is closed by
// nginx's stream core, as with OpenResty's reqsock:peek().
function preread(s) {
    var fallback = s.remoteAddress;
    var maxLen = Number(s.variables.mqtt_connect_max) || DEFAULT_MAX_LEN;
    s.on('upstream', function (data, flags) {
        var r;
        try {
            r = parse(data, maxLen);
        } catch (e) {
            r = { status: 'invalid', value: 'parser error' };
        }
        if (r.status === 'more' && !flags.last) {
            return; // wait for more bytes
        }
        s.variables.mqtt_client_id = (r.status === 'ok' && r.value !== '') ? r.value : fallback;
        s.done();
    });
}

export default { parse: parse, clientId: clientId, preread: preread, UNKNOWN: UNKNOWN, DEFAULT_MAX_LEN: DEFAULT_MAX_LEN };
