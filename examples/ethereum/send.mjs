// An Ethereum wallet sending a transfer through Umbra: ethers signs it here, and every JSON-RPC
// call (the balance, the nonce, eth_sendRawTransaction, the receipt) goes through the SOCKS5
// proxy, across the mixnet, out of the exit to the node. The node sees the exit's connection,
// never this machine's address. See README.md.
//
//   node send.mjs --rpc http://127.0.0.1:8545 --proxy socks5h://127.0.0.1:1080 --key 0x...
//
// Options:
//   --rpc URL        the node's JSON-RPC endpoint (required)
//   --proxy URL      socks5h://host:port of Umbra's proxy; without it, the calls go direct
//   --key HEX        the sender's private key (or the PRIVATE_KEY environment variable)
//   --to ADDRESS     the recipient (default: a fresh random address)
//   --value ETH      how much to send (default 0.01)
//   --repeat N       send N transfers one after the other (default 1), for timing
//
// It prints one JSON line per transfer: the hash, block, status, balances before and after,
// and send_to_receipt_ms, the time from eth_sendRawTransaction to its receipt.

import { FetchRequest, JsonRpcProvider, Wallet, parseEther } from "ethers";
import { SocksProxyAgent } from "socks-proxy-agent";

function parseArgs(argv) {
  const known = new Set(["--rpc", "--proxy", "--key", "--to", "--value", "--repeat"]);
  const args = {};
  for (let i = 2; i < argv.length; i += 2) {
    const name = argv[i];
    if (!known.has(name) || i + 1 >= argv.length) {
      fail(`unknown option or missing value: ${name}; options: ${[...known].join(" ")}`);
    }
    args[name.slice(2)] = argv[i + 1];
  }
  if (!args.rpc) fail("--rpc URL is needed: the node's JSON-RPC endpoint, e.g. http://127.0.0.1:8545");
  args.key = args.key ?? process.env.PRIVATE_KEY;
  if (!args.key) fail("--key HEX (or PRIVATE_KEY) is needed: the sender's private key");
  if (args.proxy && !/^socks5h?:\/\/[^/]+:\d+\/?$/.test(args.proxy)) {
    fail(`--proxy ${args.proxy}: write socks5h://host:port (Umbra's proxy: socks5h://127.0.0.1:1080)`);
  }
  args.repeat = Number(args.repeat ?? 1);
  return args;
}

function fail(message) {
  console.error(`send.mjs: ${message}`);
  process.exit(2);
}

// A provider whose every request goes through the proxy. socks5h: the proxy (the exit)
// resolves the node's name, so not even a DNS lookup leaves this machine.
function provider(url, proxy) {
  const request = new FetchRequest(url);
  // a round trip through the mixnet takes a few hundred milliseconds; allow for retransmissions
  request.timeout = 120_000;
  if (proxy) {
    const agent = new SocksProxyAgent(proxy.replace(/\/$/, ""), { keepAlive: true });
    request.getUrlFunc = FetchRequest.createGetUrlFunc({ agent });
  }
  // the chain id is asked once; one request per call (no batches) and nothing cached, so that
  // every balance and nonce is read afresh
  return new JsonRpcProvider(request, undefined, { staticNetwork: true, batchMaxCount: 1, cacheTimeout: -1 });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function transfer(chain, wallet, to, value) {
  const before = await chain.getBalance(to);
  const unsigned = await wallet.populateTransaction({ to, value });
  const signed = await wallet.signTransaction(unsigned);
  const start = performance.now();
  const sent = await chain.broadcastTransaction(signed); // eth_sendRawTransaction
  let receipt = null;
  while (receipt === null) {
    receipt = await chain.getTransactionReceipt(sent.hash);
    if (receipt === null) await sleep(100);
  }
  const elapsed = performance.now() - start;
  const after = await chain.getBalance(to);
  return {
    hash: sent.hash,
    block: receipt.blockNumber,
    status: receipt.status,
    from: wallet.address,
    to,
    value: value.toString(),
    balance_before: before.toString(),
    balance_after: after.toString(),
    send_to_receipt_ms: Math.round(elapsed * 10) / 10,
  };
}

const args = parseArgs(process.argv);
const chain = provider(args.rpc, args.proxy);
try {
  const wallet = new Wallet(args.key, chain);
  const to = args.to ?? Wallet.createRandom().address;
  const value = parseEther(args.value ?? "0.01");
  for (let i = 0; i < args.repeat; i++) {
    console.log(JSON.stringify(await transfer(chain, wallet, to, value)));
  }
} catch (error) {
  const through = args.proxy ? ` (through the proxy ${args.proxy}: is it running?)` : "";
  fail(`${error.shortMessage ?? error.message}${through}`);
} finally {
  chain.destroy();
}
