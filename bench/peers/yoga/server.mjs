// The benchmark's peer: what a team would write by hand instead of latchkey. GraphQL Yoga
// with the three operations the benchmark sends (the trivial query, a page of
// authentications, createUserAuthentication), on latchkey's own PostgreSQL tables through
// the pure-JavaScript `pg` driver, with the same HS256 user-token check (jose) and
// ChaCha20-Poly1305 sealing (node:crypto). It answers the very requests latchkey answers.
//
// Settings (environment): PEER_BIND (host:port), PEER_DATABASE_URL, PEER_DATABASE_MAX_CONNECTIONS
// (default 16, latchkey's), PEER_JWT_SECRET and PEER_ISSUER (latchkey's, so its user tokens
// verify), PEER_ENCRYPTION_KEY (32 bytes, base64).

import { createCipheriv, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import { GraphQLError, GraphQLScalarType } from 'graphql';
import { createSchema, createYoga } from 'graphql-yoga';
import { jwtVerify } from 'jose';
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
}

const [host, port] = (process.env.PEER_BIND || '127.0.0.1:8082').split(':');
const pool = new pg.Pool({
  connectionString: required('PEER_DATABASE_URL'),
  max: Number(process.env.PEER_DATABASE_MAX_CONNECTIONS || 16),
  connectionTimeoutMillis: 10_000,
});
const secret = new TextEncoder().encode(required('PEER_JWT_SECRET'));
const issuer = required('PEER_ISSUER');
const key = Buffer.from(required('PEER_ENCRYPTION_KEY'), 'base64');
if (key.length !== 32) {
  console.error('PEER_ENCRYPTION_KEY must hold 32 bytes');
  process.exit(2);
}
const KEY_ID = 'peer000000000000';
const MAX_PAGE = 100;

function unauthenticated() {
  return new GraphQLError('unauthenticated', { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });
}

function badInput(message) {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } });
}

// Version byte, key id, nonce, ciphertext and tag, bound to the organization, owner, row
// and field.
function seal(value, { org, user }, id, field) {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  cipher.setAAD(Buffer.from(`${org}|${user}|${id}|${field}`));
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([1, KEY_ID.length]), Buffer.from(KEY_ID), nonce, ciphertext, cipher.getAuthTag()]);
}

// A `Json` input: an object as it is, or a string holding JSON text.
function jsonInput(value) {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    throw badInput('a Json string must hold JSON text');
  }
}

const encodeCursor = (id) => Buffer.from(id).toString('base64');
const decodeCursor = (cursor) => Buffer.from(cursor, 'base64').toString('utf8');

const typeDefs = /* GraphQL */ `
  scalar Json
  scalar DateTime

  type Query {
    viewer: Viewer!
  }

  type Viewer {
    details: UserDetails!
    authentications(first: Int, after: String): AuthenticationConnection!
  }

  type UserDetails {
    username: String!
    email: String!
    name: String!
  }

  type Authentication {
    id: ID!
    name: String!
    scopes: [String!]!
    created: DateTime!
  }

  type AuthenticationEdge {
    cursor: String!
    node: Authentication!
  }

  type PageInfo {
    hasNextPage: Boolean!
    hasPreviousPage: Boolean!
    startCursor: String
    endCursor: String
  }

  type AuthenticationConnection {
    edges: [AuthenticationEdge!]!
    pageInfo: PageInfo!
  }

  input CreateUserAuthenticationInput {
    clientMutationId: String
    name: String!
    serviceId: String!
    serviceEnvironmentId: String!
    data: Json!
    formData: Json
    scopes: [String!]
    hidden: Boolean
    customFields: Json
  }

  type CreateUserAuthenticationPayload {
    authenticationId: String!
    clientMutationId: String
  }

  type Mutation {
    createUserAuthentication(input: CreateUserAuthenticationInput!): CreateUserAuthenticationPayload!
  }
`;

const resolvers = {
  Json: new GraphQLScalarType({ name: 'Json', serialize: (v) => v, parseValue: (v) => v }),
  DateTime: new GraphQLScalarType({
    name: 'DateTime',
    serialize: (v) => (v instanceof Date ? v.toISOString() : String(v)),
  }),
  Query: {
    viewer: (_parent, _args, { user }) => {
      if (!user) throw unauthenticated();
      return {};
    },
  },
  Viewer: {
    details: async (_parent, _args, { user }) => {
      const { rows } = await pool.query(
        'SELECT name, external_user_id, token_version FROM external_users WHERE id = $1 AND org_id = $2',
        [user.id, user.org],
      );
      if (rows.length === 0 || Number(rows[0].token_version) !== user.version) throw unauthenticated();
      return { username: rows[0].external_user_id, email: '', name: rows[0].name };
    },
    authentications: async (_parent, { first, after }, { user }) => {
      const size = first ?? 50;
      if (size < 0 || size > MAX_PAGE) throw badInput(`first must be between 0 and ${MAX_PAGE}`);
      const params = [user.org, user.id, size + 1];
      let sql = 'SELECT id, name, scopes, created_at FROM authentications WHERE org_id = $1 AND owner_user_id = $2';
      if (after) {
        params.push(decodeCursor(after));
        sql += ' AND id > $4';
      }
      const { rows } = await pool.query(`${sql} ORDER BY id LIMIT $3`, params);
      const hasNextPage = rows.length > size;
      const page = rows.slice(0, size);
      return {
        edges: page.map((row) => ({
          cursor: encodeCursor(row.id),
          node: { id: row.id, name: row.name, scopes: JSON.parse(row.scopes), created: row.created_at },
        })),
        pageInfo: {
          hasNextPage,
          hasPreviousPage: Boolean(after),
          startCursor: page.length ? encodeCursor(page[0].id) : null,
          endCursor: page.length ? encodeCursor(page[page.length - 1].id) : null,
        },
      };
    },
  },
  Mutation: {
    createUserAuthentication: async (_parent, { input }, { user }) => {
      if (!user) throw unauthenticated();
      const name = input.name.trim();
      if (!name) throw badInput('name must not be empty');
      const id = uuidv7();
      const credentials = seal(jsonInput(input.data), user, id, 'credentials');
      const userData = seal(jsonInput(input.formData), user, id, 'user_data');
      const now = new Date();
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(
          `INSERT INTO authentications (id, org_id, owner_user_id, service_id, environment_id, name, scopes, hidden,
             custom_fields, credentials, user_data, key_id, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, '[]', false, '{}', $7, $8, $9, $10, $10)`,
          [id, user.org, user.id, input.serviceId, input.serviceEnvironmentId, name, credentials, userData, KEY_ID, now],
        );
        await client.query(
          `INSERT INTO audit_events (id, org_id, actor_kind, actor_id, action, target_id, occurred_at)
           VALUES ($1, $2, 'user', $3, 'authentication.created', $4, $5)`,
          [uuidv7(), user.org, user.id, id, now],
        );
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
      return { authenticationId: id, clientMutationId: input.clientMutationId ?? null };
    },
  },
};

const yoga = createYoga({
  schema: createSchema({ typeDefs, resolvers }),
  graphqlEndpoint: '/graphql',
  graphiql: false,
  context: async ({ request }) => {
    const header = request.headers.get('authorization');
    if (!header) return { user: null };
    if (!header.startsWith('Bearer ')) throw unauthenticated();
    try {
      const { payload } = await jwtVerify(header.slice('Bearer '.length), secret, {
        algorithms: ['HS256'],
        issuer,
        audience: 'latchkey:user',
        clockTolerance: 30,
        requiredClaims: ['exp', 'iat', 'sub'],
      });
      return { user: { id: payload.sub, org: payload.org, version: payload.ver } };
    } catch {
      throw unauthenticated();
    }
  },
});

createServer(yoga).listen(Number(port), host, () => {
  console.error(`peer listening on ${host}:${port}`);
});
