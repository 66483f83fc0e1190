import numpy as np, polars as pl, torch, dataclasses, sys, itertools
exec(open("scripts/experiments/served_feed/probe3.py").read().split("S = score(src)")[0])
wu = w.user_index(pl.Series(users, dtype=pl.String)); wl = w.item_index(pl.Series(cat.item_ids[live].tolist(), dtype=pl.String))
T = w.expected_utility(wu[:,None], wl[None,:], now/1e6)
o = np.sort(T,1)[:,-20:].mean()
def top_util(M, k=20):
    top = np.argsort(-M,1)[:,:k]; return np.take_along_axis(T, top, 1).mean()/o
def jac(M, k=10):
    top=[set(r) for r in np.argsort(-M,1)[:,:k]]; n=len(top)
    return np.mean([len(top[i]&top[j])/len(top[i]|top[j]) for i in range(n) for j in range(i+1,n)])
P = []
for h in range(4):
    wv = np.zeros(4); wv[h]=1; P.append(score(src, wv))
P = np.stack(P)  # (4, U, I)
L = np.log(np.clip(P,1e-9,1))
print("feed score", top_util(np.tensordot([1,2,5,-1], P, 1)), jac(np.tensordot([1,2,5,-1], P, 1)))
best=[]
for a,bb,c in itertools.product([0,0.5,1],[0,0.5,1,2],[0,0.5,1,2]):
    M = a*L[0]+bb*L[1]+c*L[2]
    if a+bb+c==0: continue
    best.append((top_util(M), jac(M), a,bb,c))
for r in sorted(best)[-8:]: print("log-combo", r)
np.save("runs/P_base.npy", P)
